// Conv2d 3x3 stride 1 input gradient by Winograd's F(2x2, 3x3), optionally times the mask of a ReLU
// that produced the conv's input (flag MASK; with SOFT its stored open shares). The input gradient is
// the correlation of the output gradient with the flipped, transposed weights (src/ops/winograd.rs),
// computed in 2x2 blocks of inputs.
// With POOLED the conv (and its ReLU) feeds a 2x2 max-pool with disjoint windows, and the kernel also
// does the pool's backward pass: grad_out is the pool's output gradient, and each conv output's gradient
// is read as its window's gradient where it was the window's maximum (with SOFT, times its share of the
// cell as the maximum), so the conv's output gradient is never stored.
// Lanes are rows; each workgroup computes ICB input channels times PX neighbouring blocks of one block
// row of the input.
// Specialization: WORKGROUP_SIZE, IN_C, IN_H, IN_W (both even), OUT_C, OUT_H, OUT_W, PH, PW, ICB, PX;
// with POOLED, POOL_H and POOL_W.
// `param(i)` reads the transformed weights U' [IN_C, OUT_C, 16] (ops::winograd::backward_weights).

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_in: array<f32>;
//#if MASK
// The ReLU before this layer: its output (hard) or its stored open shares (SOFT).
@group(0) @binding(4) var<storage, read> gate: array<f32>;
//#endif
//#if POOLED
// The max-pool's choices: where each window's maximum was (hard), or each element's share (SOFT).
//#if SOFT
// (A window's 4 shares as one vec4: on lavapipe each read is a loop over the lanes.)
@group(0) @binding(5) var<storage, read> argmax: array<vec4<f32>>;
//#else
@group(0) @binding(5) var<storage, read> argmax: array<u32>;
//#endif
const POOL_LEN: u32 = OUT_C * POOL_H * POOL_W;

// Stores a window's 2x2 output gradients v (row-major) at (ty, q) of d, where they fall inside it.
fn put(d: ptr<function, array<array<f32, SPAN>, 4>>, ty: i32, q: i32, v: vec4<f32>) {
    for (var e = 0u; e < 4u; e++) {
        let y = ty + i32(e / 2u);
        let x = q + i32(e % 2u);
        if (y >= 0 && y < 4 && x >= 0 && x < i32(SPAN)) {
            (*d)[y][x] = v[e];
        }
    }
}
//#endif

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = OUT_C * OUT_H * OUT_W;
const IC_BLOCKS: u32 = (IN_C + ICB - 1u) / ICB;
const BLOCKS_H: u32 = IN_H / 2u;
const BLOCKS_W: u32 = IN_W / 2u;
const STRIPS: u32 = (BLOCKS_W + PX - 1u) / PX;
const TILES: u32 = IC_BLOCKS * BLOCKS_H * STRIPS;
// Output gradients under one row of a strip of blocks.
const SPAN: u32 = 2u * PX + 2u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let place = tile_and_block(g, chunk.grad_rows, WORKGROUP_SIZE, TILES);
    let first = place.y * WORKGROUP_SIZE;
    if (place.x >= TILES || first >= chunk.grad_rows) {
        return;
    }
    let tile = place.x;
    let ic0 = (tile / (BLOCKS_H * STRIPS)) * ICB;
    let by = (tile / STRIPS) % BLOCKS_H;
    let bx0 = (tile % STRIPS) * PX;
    let r = first + lane;
    // Lanes past the last row leave at once: on a CPU adapter a group of SIMD lanes that all left
    // skips the tile's loops (BENCHMARKS.md).
    if (r >= chunk.grad_rows) {
        return;
    }
    let row = r;
    let gbase = row * OUT_LEN;

    var m: array<array<array<f32, 16>, PX>, ICB>;
    for (var oc = 0u; oc < OUT_C; oc++) {
        // Input (iy, ix) meets output (iy + PH - ky, ix + PW - kx) through tap (ky, kx): the 4 x SPAN
        // output gradients under the strip start at row 2 by + PH - 2.
        var d: array<array<f32, SPAN>, 4>;
//#if POOLED
        // The pool windows under those outputs, each read once: window (py0 + a, px0 + b) holds
        // outputs 2 (py0 + a) + [0, 2) (rows) and 2 (px0 + b) + [0, 2) (columns).
        let py0 = (i32(2u * by + PH) - 2 - i32(PH % 2u)) / 2;
        let px0 = (i32(2u * bx0 + PW) - 2 - i32(PW % 2u)) / 2;
        for (var a = 0u; a < 2u + PH % 2u; a++) {
            let py = py0 + i32(a);
            let row_inside = py >= 0 && py < i32(POOL_H);
            for (var b = 0u; b < PX + 1u + PW % 2u; b++) {
                let px = px0 + i32(b);
                if (row_inside && px >= 0 && px < i32(POOL_W)) {
                    let o = row * POOL_LEN + (oc * POOL_H + u32(py)) * POOL_W + u32(px);
                    let g = grad_out[o];
//#if SOFT
                    let v = g * argmax[o];
//#else
                    let at = argmax[o];
                    let j = (oc * OUT_H + 2u * u32(py)) * OUT_W + 2u * u32(px);
                    let v = select(vec4<f32>(0.0), vec4<f32>(g),
                                   vec4<u32>(at) == j + vec4<u32>(0u, 1u, OUT_W, OUT_W + 1u));
//#endif
                    // Window element e is output row 2 a + e / 2 - PH % 2 of d, column 2 b + e % 2 - PW % 2.
                    put(&d, i32(2u * a) - i32(PH % 2u), i32(2u * b) - i32(PW % 2u), v);
                }
            }
        }
//#else
        for (var ty = 0u; ty < 4u; ty++) {
            let oy = i32(2u * by + ty + PH) - 2;
            let inside = oy >= 0 && oy < i32(OUT_H);
            let line = gbase + (oc * OUT_H + u32(select(0, oy, inside))) * OUT_W;
            for (var q = 0u; q < SPAN; q++) {
                let ox = i32(2u * bx0 + q + PW) - 2;
                if (inside && ox >= 0 && ox < i32(OUT_W)) {
                    d[ty][q] = grad_out[line + u32(ox)];
                }
            }
        }
//#endif
        var v: array<array<f32, 16>, PX>;
        for (var p = 0u; p < PX; p++) {
            v[p] = input_transform(&d, p);
        }
        for (var c = 0u; c < ICB; c++) {
            let u = (min(ic0 + c, IN_C - 1u) * OUT_C + oc) * 16u;
            for (var k = 0u; k < 16u; k++) {
                let w = param(u + k);
                for (var p = 0u; p < PX; p++) {
                    m[c][p][k] += w * v[p][k];
                }
            }
        }
    }
    if (r >= chunk.grad_rows) {
        return;
    }
    for (var c = 0u; c < ICB; c++) {
        let ic = ic0 + c;
        if (ic >= IN_C) {
            break;
        }
        for (var p = 0u; p < PX; p++) {
            let bx = bx0 + p;
            if (bx >= BLOCKS_W) {
                break;
            }
            let y = output_transform(m[c][p]);
            for (var k = 0u; k < 4u; k++) {
                let at = r * IN_LEN + (ic * IN_H + 2u * by + k / 2u) * IN_W + 2u * bx + k % 2u;
                var val = y[k];
//#if MASK
//#if SOFT
                val = val * gate[at];
//#else
                val = select(0.0, val, gate[at] > 0.0);
//#endif
//#endif
                grad_in[at] = val;
            }
        }
    }
}
