// One step of Adam on one layer's weights then bias, as torch.optim.Adam:
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= (lr / c1) m / (sqrt(v) / sqrt(c2) + eps),
// with the bias corrections c1 = 1 - b1^t, c2 = 1 - b2^t computed on the host.
// Each invocation updates 4 values (LEN, the layer's weights and bias, is padded to whole vec4s): on
// lavapipe every storage access is a gather or scatter, and a vec4 one costs about as much as a scalar.
// Specialization: WORKGROUP_SIZE, LEN.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grads: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m1: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m2: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= LEN / 4u) {
        return;
    }
    let g = grads[i] + step.weight_decay * params[i];
    let m = step.beta1 * m1[i] + (1.0 - step.beta1) * g;
    let v = step.beta2 * m2[i] + (1.0 - step.beta2) * g * g;
    m1[i] = m;
    m2[i] = v;
    let denom = sqrt(v) / sqrt(step.correction2) + step.eps;
    params[i] = params[i] - (step.lr / step.correction1) * m / denom;
}
