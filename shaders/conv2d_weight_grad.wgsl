// Conv2d weight and bias gradients, first pass: each row's contribution, summed over the output plane.
// Lanes are rows; a workgroup computes OCB output channels times ICB input channels (all taps) for
// WORKGROUP_SIZE rows, and writes each row's share to `partial` (row r at r * P_LEN, the layout of the
// layer's weights then bias). weight_reduce.wgsl then sums the rows in order: no atomics, the same
// bits on every run. The output plane is walked in strips of PX columns, so that each input value
// loaded serves KW taps of PX outputs and each output gradient ICB x KH x KW taps.
// With POOLED the conv (and its ReLU) feeds a max-pool with disjoint KPH x KPW windows (PX a multiple of
// KPW): grad_out is the pool's output gradient, and a conv output's gradient is its window's where it
// was the window's maximum (as conv2d_backward.wgsl reads it), so the conv's is never stored.
// Specialization: WORKGROUP_SIZE, IN_C, IN_H, IN_W, OUT_C, OUT_H, OUT_W, KH, KW, SH, SW, PH, PW, OCB, ICB,
// PX; with POOLED, KPH, KPW, POOL_H, POOL_W.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;
//#if POOLED
// Where each pool window's maximum was.
@group(0) @binding(5) var<storage, read> argmax: array<u32>;
const POOL_LEN: u32 = OUT_C * POOL_H * POOL_W;
//#endif

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = OUT_C * OUT_H * OUT_W;
const BIAS: u32 = OUT_C * IN_C * KH * KW;
const P_LEN: u32 = BIAS + OUT_C;
const OC_BLOCKS: u32 = (OUT_C + OCB - 1u) / OCB;
const IC_BLOCKS: u32 = (IN_C + ICB - 1u) / ICB;
const TILES: u32 = OC_BLOCKS * IC_BLOCKS;
const STRIPS: u32 = (OUT_W + PX - 1u) / PX;
// Inputs under one row of a strip.
const SPAN: u32 = (PX - 1u) * SW + KW;

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
    let oc0 = (tile / IC_BLOCKS) * OCB;
    let ic0 = (tile % IC_BLOCKS) * ICB;
    let x = r * IN_LEN;
    var dw: array<array<array<array<f32, KW>, KH>, ICB>, OCB>;
    var db: array<f32, OCB>;
    for (var oy = 0u; oy < OUT_H; oy++) {
        for (var s = 0u; s < STRIPS; s++) {
            let ox0 = s * PX;
            // Zero past the plane's last column, so those outputs add nothing.
            var gs: array<array<f32, PX>, OCB>;
            for (var c = 0u; c < OCB; c++) {
                let oc = min(oc0 + c, OUT_C - 1u);
//#if POOLED
                // Outputs past the last window get no gradient.
                let py = oy / KPH;
                for (var w = 0u; w < PX / KPW; w++) {
                    let px = ox0 / KPW + w;
                    if (py < POOL_H && px < POOL_W) {
                        let o = r * POOL_LEN + (oc * POOL_H + py) * POOL_W + px;
                        let g = grad_out[o];
                        let at = argmax[o];
                        let j = (oc * OUT_H + oy) * OUT_W + px * KPW;
                        for (var e = 0u; e < KPW; e++) {
                            gs[c][w * KPW + e] = select(0.0, g, at == j + e);
                            db[c] += gs[c][w * KPW + e];
                        }
                    }
                }
//#else
                let line = r * OUT_LEN + (oc * OUT_H + oy) * OUT_W;
                for (var p = 0u; p < PX; p++) {
                    if (ox0 + p < OUT_W) {
                        gs[c][p] = grad_out[line + ox0 + p];
                        db[c] += gs[c][p];
                    }
                }
//#endif
            }
            for (var i = 0u; i < ICB; i++) {
                let ic = min(ic0 + i, IN_C - 1u);
                for (var ky = 0u; ky < KH; ky++) {
                    let iy = i32(oy * SH + ky) - i32(PH);
                    if (iy < 0 || iy >= i32(IN_H)) {
                        continue;
                    }
                    let line = x + (ic * IN_H + u32(iy)) * IN_W;
                    var xs: array<f32, SPAN>;
                    for (var q = 0u; q < SPAN; q++) {
                        let ix = i32(ox0 * SW + q) - i32(PW);
                        if (ix >= 0 && ix < i32(IN_W)) {
                            xs[q] = input[line + u32(ix)];
                        }
                    }
                    for (var p = 0u; p < PX; p++) {
                        for (var kx = 0u; kx < KW; kx++) {
                            let v = xs[p * SW + kx];
                            for (var c = 0u; c < OCB; c++) {
                                dw[c][i][ky][kx] += gs[c][p] * v;
                            }
                        }
                    }
                }
            }
        }
    }
    let out = r * P_LEN;
    for (var c = 0u; c < OCB; c++) {
        let oc = oc0 + c;
        if (oc >= OUT_C) {
            break;
        }
        for (var i = 0u; i < ICB; i++) {
            let ic = ic0 + i;
            if (ic >= IN_C) {
                break;
            }
            for (var ky = 0u; ky < KH; ky++) {
                for (var kx = 0u; kx < KW; kx++) {
                    partial[out + ((oc * IN_C + ic) * KH + ky) * KW + kx] = dw[c][i][ky][kx];
                }
            }
        }
        if (ic0 == 0u) {
            partial[out + BIAS + oc] = db[c];
        }
    }
}
