// Seeds the backward pass: the gradient of the target logit with respect to the logits is one-hot.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(1) var<uniform> layer: Layer;
@group(0) @binding(2) var<storage, read> rows: array<Row>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    let classes = layer.out_len;
    if (i >= chunk.grad_rows * classes) {
        return;
    }
    grad[i] = select(0.0, 1.0, i % classes == rows[i / classes].logit);
}
