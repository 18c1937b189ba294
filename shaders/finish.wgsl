// Attributions: (x - b) times the weighted sum of each image's accumulators.
// With FOLDED the accumulators hold the gradient of the first conv's output (accumulate.wgsl): a SUM
// pass writes their weighted sum per image, and the FOLDED pass applies the conv's transpose to it,
// once per image: the input gradient of output (oc, oy, ox) at input (ic, oy SH + ky - PH,
// ox SW + kx - PW) is weight (oc, ic, ky, kx).
// Specialization: WORKGROUP_SIZE, LEN (values per image; with SUM, per accumulator); FOLDED: the
// conv's IN_*, OUT_*, KH, KW, SH, SW, PH, PW and ACC_LEN (= OUT_C OUT_H OUT_W), with `param(i)`
// reading its weights [OUT_C, IN_C, KH, KW].

@group(0) @binding(0) var<uniform> chunk: Chunk;
//#if SUM
// Per image, the weighted sum of its accumulators.
@group(0) @binding(5) var<storage, read_write> sums: array<f32>;
//#else
// The group's inputs, then its baselines.
@group(0) @binding(2) var<storage, read> images: array<f32>;
@group(0) @binding(5) var<storage, read_write> attributions: array<f32>;
//#endif
//#if FOLDED
// Per image, the weighted sum of its accumulators (the SUM pass).
@group(0) @binding(3) var<storage, read> sums: array<f32>;
//#else
// Per image, `chunk.slots` accumulators of LEN values.
@group(0) @binding(3) var<storage, read> total: array<f32>;
// Per image, the weight of each accumulator.
@group(0) @binding(4) var<storage, read> slot_weights: array<f32>;
//#endif

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.images * LEN) {
        return;
    }
    let image = i / LEN;
    let d = i % LEN;
    var sum = 0.0;
//#if FOLDED
    let at = image * ACC_LEN;
    let ic = d / (IN_H * IN_W);
    let iy = (d / IN_W) % IN_H;
    let ix = d % IN_W;
    // Each output channel's taps apart, then the channels: smaller rounding error.
    for (var oc = 0u; oc < OUT_C; oc++) {
        var channel = 0.0;
        for (var ky = 0u; ky < KH; ky++) {
            let ty = i32(iy + PH) - i32(ky);
            if (ty < 0 || ty % i32(SH) != 0 || u32(ty) / SH >= OUT_H) {
                continue;
            }
            let oy = u32(ty) / SH;
            for (var kx = 0u; kx < KW; kx++) {
                let tx = i32(ix + PW) - i32(kx);
                if (tx < 0 || tx % i32(SW) != 0 || u32(tx) / SW >= OUT_W) {
                    continue;
                }
                let ox = u32(tx) / SW;
                let w = param(((oc * IN_C + ic) * KH + ky) * KW + kx);
                channel += w * sums[at + (oc * OUT_H + oy) * OUT_W + ox];
            }
        }
        sum += channel;
    }
//#else
    for (var s = 0u; s < chunk.slots; s++) {
        sum += slot_weights[image * chunk.slots + s] * total[(image * chunk.slots + s) * LEN + d];
    }
//#endif
//#if SUM
    sums[i] = sum;
//#else
    attributions[i] = (images[i] - images[chunk.images * LEN + i]) * sum;
//#endif
}
