// AvgPool2d input gradient: each input value gathers 1/(KH KW) of every covering window's gradient;
// optionally times the mask of a ReLU that produced the pool's input (flag MASK).
// Lanes are rows; a workgroup covers PX inputs of one input row of one channel.
// Specialization: as maxpool_forward.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_in: array<f32>;
//#if MASK
// The ReLU before this layer: its output (hard) or its stored open shares (SOFT).
@group(0) @binding(4) var<storage, read> gate: array<f32>;
//#endif

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = OUT_C * OUT_H * OUT_W;
const STRIPS: u32 = (IN_W + PX - 1u) / PX;
const TILES: u32 = IN_C * IN_H * STRIPS;
const SCALE: f32 = 1.0 / f32(KH * KW);

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
        var acc = 0.0;
        for (var oy = ys.x; oy <= ys.y; oy++) {
            for (var ox = xs.x; ox <= xs.y; ox++) {
                acc += grad_out[base + u32(oy) * OUT_W + u32(ox)] * SCALE;
            }
        }
        let at = r * IN_LEN + (c * IN_H + iy) * IN_W + ix;
//#if MASK
//#if SOFT
        acc = acc * gate[at];
//#else
        acc = select(0.0, acc, gate[at] > 0.0);
//#endif
//#endif
        grad_in[at] = acc;
    }
}
