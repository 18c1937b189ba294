// ReLU input gradient, in place, where the layer after the ReLU cannot apply the mask itself. The
// derivative at 0 is 0, as in PyTorch; with SOFT the gradient is scaled by the stored open share instead.
// Specialization: WORKGROUP_SIZE, LEN.

@group(0) @binding(0) var<uniform> chunk: Chunk;
// The ReLU's output (hard) or its open shares (SOFT).
@group(0) @binding(2) var<storage, read> gate: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.grad_rows * LEN) {
        return;
    }
//#if SOFT
    grad[i] = grad[i] * gate[i];
//#else
    grad[i] = select(0.0, grad[i], gate[i] > 0.0);
//#endif
}
