// One step of SGD with momentum on one layer's weights then bias, as torch.optim.SGD (dampening 0):
// g += weight_decay * p; v = momentum * v + g; p -= lr * v.
// Each invocation updates 4 values (LEN, the layer's weights and bias, is padded to whole vec4s): on
// lavapipe every storage access is a gather or scatter, and a vec4 one costs about as much as a scalar.
// Specialization: WORKGROUP_SIZE, LEN.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grads: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> velocity: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= LEN / 4u) {
        return;
    }
    let g = grads[i] + step.weight_decay * params[i];
    let v = select(g, step.momentum * velocity[i] + g, step.count > 1u);
    velocity[i] = v;
    params[i] = params[i] - step.lr * v;
}
