// Conv2d weight gradients, second pass: the sum over the batch's rows of the per-row shares written by
// conv2d_weight_grad.wgsl, in row order. Lanes are weights. Without HAS_BIAS the bias gradient is zero,
// so that a layer without bias keeps none.
// Specialization: WORKGROUP_SIZE, P_LEN (weights then bias per row), BIAS (where the bias starts).

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> partial: array<f32>;
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let j = invocation_index(wg, groups, local);
    if (j >= P_LEN) {
        return;
    }
    var acc = 0.0;
    for (var r = 0u; r < chunk.grad_rows; r++) {
        acc += partial[r * P_LEN + j];
    }
//#if HAS_BIAS
    grads[j] = acc;
//#else
    grads[j] = select(acc, 0.0, j >= BIAS);
//#endif
}
