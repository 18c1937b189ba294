// Conv2d forward, with the bias and optionally the ReLU that follows it (flag RELU).
// Lanes are rows; each workgroup computes one tile for WORKGROUP_SIZE rows: OCB output channels times PX
// neighbouring outputs of one output row. Each input value loaded serves OCB * KW products and each weight
// (read at a uniform address) PX products.
// Specialization: WORKGROUP_SIZE, IN_C, IN_H, IN_W, OUT_C, OUT_H, OUT_W, KH, KW, SH, SW, PH, PW, OCB, PX;
// `param(i)` reads the weights [OUT_C, IN_C, KH, KW], then the bias [OUT_C].

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = OUT_C * OUT_H * OUT_W;
const BIAS: u32 = OUT_C * IN_C * KH * KW;
const OC_BLOCKS: u32 = (OUT_C + OCB - 1u) / OCB;
const STRIPS: u32 = (OUT_W + PX - 1u) / PX;
const TILES: u32 = OC_BLOCKS * OUT_H * STRIPS;
// Inputs under a strip of PX outputs.
const SPAN: u32 = (PX - 1u) * SW + KW;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let first = (g / TILES) * WORKGROUP_SIZE;
    if (first >= chunk.rows) {
        return;
    }
    let tile = g % TILES;
    let oc0 = (tile / (OUT_H * STRIPS)) * OCB;
    let oy = (tile / STRIPS) % OUT_H;
    let ox0 = (tile % STRIPS) * PX;
    let r = first + lane;
    // Lanes past the last row compute on the first row and store nothing.
    let x = select(first, r, r < chunk.rows) * IN_LEN;

    var acc: array<array<f32, PX>, OCB>;
    for (var ic = 0u; ic < IN_C; ic++) {
        // Summing each input channel apart, then the channels, keeps the rounding error small.
        var part: array<array<f32, PX>, OCB>;
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
            for (var c = 0u; c < OCB; c++) {
                let w = ((min(oc0 + c, OUT_C - 1u) * IN_C + ic) * KH + ky) * KW;
                for (var kx = 0u; kx < KW; kx++) {
                    let wv = param(w + kx);
                    for (var p = 0u; p < PX; p++) {
                        part[c][p] += wv * xs[p * SW + kx];
                    }
                }
            }
        }
        for (var c = 0u; c < OCB; c++) {
            for (var p = 0u; p < PX; p++) {
                acc[c][p] += part[c][p];
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
        // The bias goes last: added first, it would round away the low bits of small products (near a
        // zero baseline every product is small).
        let b = param(BIAS + oc);
        for (var p = 0u; p < PX; p++) {
            let ox = ox0 + p;
            if (ox >= OUT_W) {
                break;
            }
            var v = acc[c][p] + b;
//#if RELU
            v = max(v, 0.0);
//#endif
            output[r * OUT_LEN + (oc * OUT_H + oy) * OUT_W + ox] = v;
        }
    }
}
