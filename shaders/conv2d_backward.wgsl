// Conv2d input gradient, optionally times the mask of a ReLU that produced the conv's input (flag MASK).
// With POOLED the conv (and its ReLU) feeds a max-pool with disjoint KPH x KPW windows whose backward
// pass this kernel also does: grad_out is the pool's output gradient, and a conv output's gradient is
// its window's where it was the window's maximum (with SOFT, times its share of the cell as the
// maximum), so the conv's output gradient is never stored.
// Lanes are rows; each workgroup computes ICB input channels times PX neighbouring values of one input row,
// gathering from the output gradients whose windows cover them (no atomics).
// Specialization: as conv2d_forward with ICB for OCB, plus GX_LO_I and GSPAN: the output columns under a
// strip of inputs starting at ix0 (a multiple of SW) are ix0 / SW + GX_LO_I + [0, GSPAN); with POOLED,
// KPH, KPW, POOL_H and POOL_W.

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
@group(0) @binding(5) var<storage, read> argmax: array<f32>;
//#else
@group(0) @binding(5) var<storage, read> argmax: array<u32>;
//#endif
const POOL_LEN: u32 = OUT_C * POOL_H * POOL_W;

// The gradient of conv output (oc, oy, ox) of `row`, through the pool.
fn pooled_grad(row: u32, oc: u32, oy: u32, ox: u32) -> f32 {
    let py = oy / KPH;
    let px = ox / KPW;
    if (py >= POOL_H || px >= POOL_W) {
        return 0.0;
    }
    let o = row * POOL_LEN + (oc * POOL_H + py) * POOL_W + px;
//#if SOFT
    return grad_out[o] * argmax[o * KPH * KPW + (oy % KPH) * KPW + ox % KPW];
//#else
    return select(0.0, grad_out[o], argmax[o] == (oc * OUT_H + oy) * OUT_W + ox);
//#endif
}
//#endif

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = OUT_C * OUT_H * OUT_W;
const IC_BLOCKS: u32 = (IN_C + ICB - 1u) / ICB;
const STRIPS: u32 = (IN_W + PX - 1u) / PX;
const TILES: u32 = IC_BLOCKS * IN_H * STRIPS;

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
    let ic0 = (tile / (IN_H * STRIPS)) * ICB;
    let iy = (tile / STRIPS) % IN_H;
    let ix0 = (tile % STRIPS) * PX;
    let r = first + lane;
    // Lanes past the last row leave at once: on a CPU adapter a group of SIMD lanes that all left
    // skips the tile's loops (BENCHMARKS.md).
    if (r >= chunk.grad_rows) {
        return;
    }
    let row = r;
    let gbase = row * OUT_LEN;
    let gx0 = i32(ix0 / SW) + GX_LO_I;

    var acc: array<array<f32, PX>, ICB>;
    for (var oc = 0u; oc < OUT_C; oc++) {
        var part: array<array<f32, PX>, ICB>;
        for (var ky = 0u; ky < KH; ky++) {
            // Output row oy reads input row iy through tap ky when oy * SH + ky - PH == iy.
            let ty = i32(iy + PH) - i32(ky);
            if (ty < 0 || u32(ty) % SH != 0u || u32(ty) / SH >= OUT_H) {
                continue;
            }
            // The output gradient row (read through the pool's choices with POOLED).
            let line = gbase + (oc * OUT_H + u32(ty) / SH) * OUT_W;
            var gs: array<f32, GSPAN>;
            for (var q = 0u; q < GSPAN; q++) {
                let ox = gx0 + i32(q);
                if (ox >= 0 && ox < i32(OUT_W)) {
//#if POOLED
                    gs[q] = pooled_grad(row, oc, u32(ty) / SH, u32(ox));
//#else
                    gs[q] = grad_out[line + u32(ox)];
//#endif
                }
            }
            for (var c = 0u; c < ICB; c++) {
                let w = ((oc * IN_C + min(ic0 + c, IN_C - 1u)) * KH + ky) * KW;
                for (var kx = 0u; kx < KW; kx++) {
                    let wv = param(w + kx);
                    for (var p = 0u; p < PX; p++) {
                        // Input ix0 + p meets output column (ix0 + p + PW - kx) / SW through tap kx.
                        let e = i32(p + PW) - i32(kx);
                        if (e % i32(SW) == 0) {
                            part[c][p] += wv * gs[e / i32(SW) - GX_LO_I];
                        }
                    }
                }
            }
        }
        for (var c = 0u; c < ICB; c++) {
            for (var p = 0u; p < PX; p++) {
                acc[c][p] += part[c][p];
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
            let ix = ix0 + p;
            if (ix >= IN_W) {
                break;
            }
            let at = r * IN_LEN + (ic * IN_H + iy) * IN_W + ix;
            var v = acc[c][p];
//#if MASK
//#if SOFT
            v = v * gate[at];
//#else
            v = select(0.0, v, gate[at] > 0.0);
//#endif
//#endif
            grad_in[at] = v;
        }
    }
}
