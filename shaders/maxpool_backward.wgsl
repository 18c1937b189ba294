// MaxPool2d input gradient: each window's gradient goes to where its maximum was, or, with SOFT, to
// every element in proportion to its share of the cell as the maximum.
// With DISJOINT (stride equal to the kernel, no padding, windows covering the input exactly) each
// window writes its own inputs. Otherwise each input value gathers from the windows that cover it.
// Lanes are rows; a workgroup covers PX windows (DISJOINT) or PX inputs of one row of one channel.
// Specialization: as maxpool_forward.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
//#if SOFT
@group(0) @binding(3) var<storage, read> argmax: array<f32>;
//#else
@group(0) @binding(3) var<storage, read> argmax: array<u32>;
//#endif
@group(0) @binding(4) var<storage, read_write> grad_in: array<f32>;

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = OUT_C * OUT_H * OUT_W;
//#if DISJOINT
const STRIPS: u32 = (OUT_W + PX - 1u) / PX;
const TILES: u32 = OUT_C * OUT_H * STRIPS;
//#else
const STRIPS: u32 = (IN_W + PX - 1u) / PX;
const TILES: u32 = IN_C * IN_H * STRIPS;
//#endif

// The gradient window `o` (an index into the outputs of all rows) sends to its element (ky, kx), which
// is input `j` of the row.
fn share_of(o: u32, ky: u32, kx: u32, j: u32) -> f32 {
//#if SOFT
    return argmax[o * WIN + ky * KW + kx];
//#else
    return select(0.0, 1.0, argmax[o] == j);
//#endif
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let place = tile_and_block(g, chunk.grad_rows, WORKGROUP_SIZE, TILES);
    let r = place.y * WORKGROUP_SIZE + lane;
    if (place.x >= TILES || r >= chunk.grad_rows) {
        return;
    }
    let tile = place.x;
//#if DISJOINT
    let c = tile / (OUT_H * STRIPS);
    let oy = (tile / STRIPS) % OUT_H;
    let ox0 = (tile % STRIPS) * PX;
    for (var p = 0u; p < PX; p++) {
        let ox = ox0 + p;
        if (ox >= OUT_W) {
            break;
        }
        let o = r * OUT_LEN + (c * OUT_H + oy) * OUT_W + ox;
        let grad = grad_out[o];
        for (var ky = 0u; ky < KH; ky++) {
            let line = (c * IN_H + oy * KH + ky) * IN_W + ox * KW;
            for (var kx = 0u; kx < KW; kx++) {
                grad_in[r * IN_LEN + line + kx] = share_of(o, ky, kx, line + kx) * grad;
            }
        }
    }
//#else
    let c = tile / (IN_H * STRIPS);
    let iy = (tile / STRIPS) % IN_H;
    let ix0 = (tile % STRIPS) * PX;
    let ys = covering(iy, KH, SH, PH, OUT_H);
    let base = r * OUT_LEN + c * OUT_H * OUT_W;
    for (var p = 0u; p < PX; p++) {
        let ix = ix0 + p;
        if (ix >= IN_W) {
            break;
        }
        let xs = covering(ix, KW, SW, PW, OUT_W);
        let j = (c * IN_H + iy) * IN_W + ix;
        var acc = 0.0;
        for (var oy = ys.x; oy <= ys.y; oy++) {
            for (var ox = xs.x; ox <= xs.y; ox++) {
                let o = base + u32(oy) * OUT_W + u32(ox);
                let ky = iy + PH - u32(oy) * SH;
                let kx = ix + PW - u32(ox) * SW;
                acc += share_of(o, ky, kx, j) * grad_out[o];
            }
        }
        grad_in[r * IN_LEN + j] = acc;
    }
//#endif
}
