// Softmax cross-entropy, the mean over the batch's rows: each row's loss and whether its top logit is
// its label, and the gradient of the mean loss with respect to the logits, (softmax - onehot) / rows,
// which seeds the backward pass of training.
// Specialization: WORKGROUP_SIZE, CLASSES.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
// Two values per row: the loss, and 1 if the prediction is right else 0.
@group(0) @binding(5) var<storage, read_write> losses: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let r = invocation_index(wg, groups, local);
    if (r >= chunk.grad_rows) {
        return;
    }
    let z = r * CLASSES;
    var top = logits[z];
    var best = 0u;
    for (var c = 1u; c < CLASSES; c++) {
        if (logits[z + c] > top) {
            top = logits[z + c];
            best = c;
        }
    }
    var sum = 0.0;
    for (var c = 0u; c < CLASSES; c++) {
        sum += exp(logits[z + c] - top);
    }
    let label = labels[r];
    let scale = 1.0 / f32(chunk.grad_rows);
    for (var c = 0u; c < CLASSES; c++) {
        let p = exp(logits[z + c] - top) / sum;
        grad[z + c] = (p - select(0.0, 1.0, c == label)) * scale;
    }
    losses[2u * r] = log(sum) + top - logits[z + label];
    losses[2u * r + 1u] = select(0.0, 1.0, best == label);
}
