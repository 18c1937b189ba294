// Linear weight and bias gradients, dW = G^T A and db = sum of G over the batch's rows, each summed in
// row order (no atomics). Lanes are input features, JB of them per lane (WORKGROUP_SIZE apart); a
// workgroup computes OB outputs. The extra feature IN_LEN, whose value is one, gives the bias.
// Specialization: WORKGROUP_SIZE, IN_LEN, OUT_LEN, OB, JB; flag HAS_BIAS.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> grads: array<f32>;

const BIAS: u32 = OUT_LEN * IN_LEN;
const FEATURES: u32 = IN_LEN + 1u;
const J_BLOCKS: u32 = (FEATURES + WORKGROUP_SIZE * JB - 1u) / (WORKGROUP_SIZE * JB);

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let o0 = (g / J_BLOCKS) * OB;
    if (o0 >= OUT_LEN) {
        return;
    }
    let j0 = (g % J_BLOCKS) * WORKGROUP_SIZE * JB + lane;
    var acc: array<array<f32, JB>, OB>;
    for (var r = 0u; r < chunk.grad_rows; r++) {
        var a: array<f32, JB>;
        for (var k = 0u; k < JB; k++) {
            let j = j0 + k * WORKGROUP_SIZE;
            a[k] = select(input[r * IN_LEN + min(j, IN_LEN - 1u)], 1.0, j == IN_LEN);
        }
        for (var o = 0u; o < OB; o++) {
            let gv = grad_out[r * OUT_LEN + min(o0 + o, OUT_LEN - 1u)];
            for (var k = 0u; k < JB; k++) {
                acc[o][k] += gv * a[k];
            }
        }
    }
    for (var o = 0u; o < OB; o++) {
        let out = o0 + o;
        if (out >= OUT_LEN) {
            break;
        }
        for (var k = 0u; k < JB; k++) {
            let j = j0 + k * WORKGROUP_SIZE;
            if (j < IN_LEN) {
                grads[out * IN_LEN + j] = acc[o][k];
            } else if (j == IN_LEN) {
//#if HAS_BIAS
                grads[BIAS + out] = acc[o][k];
//#else
                grads[BIAS + out] = 0.0;
//#endif
            }
        }
    }
}
