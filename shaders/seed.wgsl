// Seeds the backward pass where the last layer cannot (see linear_backward.wgsl): the gradient of the
// target logit with respect to the logits is one-hot.
// Specialization: WORKGROUP_SIZE, CLASSES.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> rows: array<Row>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.grad_rows * CLASSES) {
        return;
    }
    grad[i] = select(0.0, 1.0, i % CLASSES == rows[i / CLASSES].logit);
}
