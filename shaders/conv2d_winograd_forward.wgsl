// Conv2d 3x3 stride 1 by Winograd's F(2x2, 3x3) (src/ops/winograd.rs): 16 multiplications per 2x2 block
// of outputs and channel pair instead of 36. Then the bias and the ReLU (flag RELU), and with POOL a 2x2
// stride-2 max-pool: each 2x2 block of conv outputs is one pool window, so the conv's own output is never
// stored. Without POOL the blocks are stored; with SOFT the conv also carries the tangent rows (without
// the bias) and the ReLU stores each value's open share of the cell (MASK_OUT), as conv2d_forward.wgsl.
// Lanes are rows; each workgroup computes OCB output channels times PX neighbouring blocks of one block
// row. Per input channel, each lane loads the 4 x (2 PX + 2) inputs under its blocks, transforms them, and
// multiplies them with the transformed weights, read at uniform addresses.
// Specialization: WORKGROUP_SIZE, IN_C, IN_H, IN_W, OUT_C, OUT_H, OUT_W (both even without POOL), PH, PW,
// OCB, PX, with POOL also POOL_H, POOL_W. `param(i)` reads the transformed weights U [OUT_C, IN_C, 16]
// (ops::winograd::forward_weights), then the bias [OUT_C].

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
//#if POOL
@group(0) @binding(4) var<storage, read_write> argmax: array<u32>;

const GRID_H: u32 = POOL_H;
const GRID_W: u32 = POOL_W;
const STORED: u32 = OUT_C * POOL_H * POOL_W;
//#else
//#if MASK_OUT
@group(0) @binding(4) var<storage, read_write> shares: array<f32>;
//#endif
const GRID_H: u32 = OUT_H / 2u;
const GRID_W: u32 = OUT_W / 2u;
const STORED: u32 = OUT_C * OUT_H * OUT_W;
//#endif

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const BIAS: u32 = OUT_C * IN_C * 16u;
const OC_BLOCKS: u32 = (OUT_C + OCB - 1u) / OCB;
const STRIPS: u32 = (GRID_W + PX - 1u) / PX;
const TILES: u32 = OC_BLOCKS * GRID_H * STRIPS;
// Inputs under one row of a strip of blocks.
const SPAN: u32 = 2u * PX + 2u;
const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let first = (g / TILES) * WORKGROUP_SIZE;
    if (first >= chunk.rows) {
        return;
    }
    let tile = g % TILES;
    let oc0 = (tile / (GRID_H * STRIPS)) * OCB;
    let gy = (tile / STRIPS) % GRID_H;
    let gx0 = (tile % STRIPS) * PX;
    let r = first + lane;
    // Lanes past the last row leave at once: on a CPU adapter a group of SIMD lanes that all left
    // skips the tile's loops (BENCHMARKS.md).
    if (r >= chunk.rows) {
        return;
    }
    let row = r;
    let x = row * IN_LEN;
//#if SOFT
    let xt = (chunk.rows + row) * IN_LEN;
    var mt: array<array<array<f32, 16>, PX>, OCB>;
//#endif

    // Per output channel and block, the 16 products of the transformed domain, summed over channels.
    var m: array<array<array<f32, 16>, PX>, OCB>;
    for (var ic = 0u; ic < IN_C; ic++) {
        // The 4 x SPAN inputs under the strip; zero outside the input (padding).
        var d: array<array<f32, SPAN>, 4>;
//#if SOFT
        var dt: array<array<f32, SPAN>, 4>;
//#endif
        for (var ty = 0u; ty < 4u; ty++) {
            let iy = i32(2u * gy + ty) - i32(PH);
            let inside = iy >= 0 && iy < i32(IN_H);
            let line = (ic * IN_H + u32(select(0, iy, inside))) * IN_W;
            for (var q = 0u; q < SPAN; q++) {
                let ix = i32(2u * gx0 + q) - i32(PW);
                if (inside && ix >= 0 && ix < i32(IN_W)) {
                    d[ty][q] = input[x + line + u32(ix)];
//#if SOFT
                    dt[ty][q] = input[xt + line + u32(ix)];
//#endif
                }
            }
        }
        var v: array<array<f32, 16>, PX>;
//#if SOFT
        var vt: array<array<f32, 16>, PX>;
//#endif
        for (var p = 0u; p < PX; p++) {
            v[p] = input_transform(&d, p);
//#if SOFT
            vt[p] = input_transform(&dt, p);
//#endif
        }
        for (var c = 0u; c < OCB; c++) {
            let u = (min(oc0 + c, OUT_C - 1u) * IN_C + ic) * 16u;
            for (var k = 0u; k < 16u; k++) {
                let w = param(u + k);
                for (var p = 0u; p < PX; p++) {
                    m[c][p][k] += w * v[p][k];
//#if SOFT
                    mt[c][p][k] += w * vt[p][k];
//#endif
                }
            }
        }
    }
    if (r >= chunk.rows) {
        return;
    }
    for (var c = 0u; c < OCB; c++) {
        let oc = oc0 + c;
        if (oc >= OUT_C) {
            break;
        }
        // The bias goes last: added first, it would round away the low bits of small products.
        let b = param(BIAS + oc);
        for (var p = 0u; p < PX; p++) {
            let gx = gx0 + p;
            if (gx >= GRID_W) {
                break;
            }
            let y = output_transform(m[c][p]);
//#if POOL
            // The first maximum in row-major window order, as max-pooling in PyTorch.
            var best = 0.0;
            var best_at = NONE;
            for (var k = 0u; k < 4u; k++) {
                var val = y[k] + b;
//#if RELU
                val = max(val, 0.0);
//#endif
                if (best_at == NONE || val > best) {
                    best = val;
                    best_at = (oc * OUT_H + 2u * gy + k / 2u) * OUT_W + 2u * gx + k % 2u;
                }
            }
//#if RELU
            // No gradient passes the ReLU where the window's maximum is not positive.
            best_at = select(NONE, best_at, best > 0.0);
//#endif
            let o = (oc * POOL_H + gy) * POOL_W + gx;
            output[r * STORED + o] = best;
            argmax[r * STORED + o] = best_at;
//#else
//#if SOFT
            let yt = output_transform(mt[c][p]);
//#endif
            for (var k = 0u; k < 4u; k++) {
                let o = (oc * OUT_H + 2u * gy + k / 2u) * OUT_W + 2u * gx + k % 2u;
                var val = y[k] + b;
//#if SOFT
                var dv = yt[k];
//#if RELU
//#if MASK_OUT
                shares[r * STORED + o] = relu_share(val, dv);
//#endif
                dv = select(0.0, dv, val > 0.0);
//#endif
                output[(chunk.rows + r) * STORED + o] = dv;
//#endif
//#if RELU
                val = max(val, 0.0);
//#endif
                output[r * STORED + o] = val;
            }
//#endif
        }
    }
}
