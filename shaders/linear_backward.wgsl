// Linear input gradient. With SEED the layer produces the logits and the output gradient is one-hot at
// the row's target, so the input gradient is that row of the weights; otherwise it is the weights
// transposed times the output gradient. With MASK it is multiplied by the mask of a ReLU that produced
// the layer's input.
// Lanes are rows, each lane RB rows (WORKGROUP_SIZE apart); a workgroup computes IB input values.
// Specialization: as linear_forward, with IB. Each tile's inputs lie in one of the WINDOWS windows of the
// weights (KW a multiple of IB), which the tile picks once: the loop over outputs has a copy per window.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(3) var<storage, read_write> grad_in: array<f32>;
//#if SEED
@group(0) @binding(5) var<storage, read> rows: array<Row>;
//#else
//#if VEC4
// OUT_LEN, IN_LEN and IB are multiples of 4 and IB divides IN_LEN: output gradients and weights are read
// 4 at a time (see linear_forward.wgsl).
@group(0) @binding(2) var<storage, read> grad_out: array<vec4<f32>>;
//#else
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
//#endif
//#endif
//#if MASK
// The ReLU before this layer: its output (hard) or its stored open shares (SOFT).
@group(0) @binding(4) var<storage, read> gate: array<f32>;
//#endif

const TILES: u32 = (IN_LEN + IB - 1u) / IB;
const BLOCK: u32 = 32u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let place = tile_and_block(g, chunk.grad_rows, WORKGROUP_SIZE * RB, TILES);
    let first = place.y * WORKGROUP_SIZE * RB;
    if (place.x >= TILES || first >= chunk.grad_rows) {
        return;
    }
    let i0 = place.x * IB;
    var acc: array<array<f32, RB>, IB>;
//#if SEED
    for (var k = 0u; k < RB; k++) {
        let r = first + k * WORKGROUP_SIZE + lane;
        let w = rows[select(first, r, r < chunk.grad_rows)].logit * IN_LEN;
        for (var c = 0u; c < IB; c++) {
            acc[c][k] = param(w + min(i0 + c, IN_LEN - 1u));
        }
    }
//#else
    var gbase: array<u32, RB>;
    for (var k = 0u; k < RB; k++) {
        let r = first + k * WORKGROUP_SIZE + lane;
        gbase[k] = select(first, r, r < chunk.grad_rows) * OUT_LEN;
    }
    //#unroll wi WINDOWS
    if (i0 / KW == wi) {
    for (var o0 = 0u; o0 < OUT_LEN; o0 += BLOCK) {
        var part: array<array<f32, RB>, IB>;
//#if VEC4
        for (var o = o0; o < min(o0 + BLOCK, OUT_LEN); o += 4u) {
            var gs: array<vec4<f32>, RB>;
            for (var k = 0u; k < RB; k++) {
                gs[k] = grad_out[(gbase[k] + o) / 4u];
            }
            // In the order of the scalar loop: the same sums.
            for (var q = 0u; q < 4u; q++) {
                for (var c4 = 0u; c4 < IB / 4u; c4++) {
                    let w = window4(wi, ((o + q) * KW + i0 - wi * KW) / 4u + c4);
                    for (var e = 0u; e < 4u; e++) {
                        for (var k = 0u; k < RB; k++) {
                            part[c4 * 4u + e][k] += w[e] * gs[k][q];
                        }
                    }
                }
            }
        }
//#else
        for (var o = o0; o < min(o0 + BLOCK, OUT_LEN); o++) {
            var gs: array<f32, RB>;
            for (var k = 0u; k < RB; k++) {
                gs[k] = grad_out[gbase[k] + o];
            }
            for (var c = 0u; c < IB; c++) {
                let w = param(o * IN_LEN + min(i0 + c, IN_LEN - 1u));
                for (var k = 0u; k < RB; k++) {
                    part[c][k] += w * gs[k];
                }
            }
        }
//#endif
        for (var c = 0u; c < IB; c++) {
            for (var k = 0u; k < RB; k++) {
                acc[c][k] += part[c][k];
            }
        }
    }
    }
    //#end
//#endif
    for (var k = 0u; k < RB; k++) {
        let r = first + k * WORKGROUP_SIZE + lane;
        if (r >= chunk.grad_rows) {
            break;
        }
        for (var c = 0u; c < IB; c++) {
            let i = i0 + c;
            if (i >= IN_LEN) {
                break;
            }
            let at = r * IN_LEN + i;
            var v = acc[c][k];
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
