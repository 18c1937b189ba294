// ReLU forward, in place, where it cannot be fused into the conv or linear before it. Its output serves
// the backward pass as the mask (out > 0 exactly when in > 0). With SOFT the tangent rows follow the
// ReLU too, and with MASK_OUT each element's open share of the cell is stored for the backward pass.
// Specialization: WORKGROUP_SIZE, LEN.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read_write> values: array<f32>;
//#if MASK_OUT
@group(0) @binding(4) var<storage, read_write> shares: array<f32>;
//#endif

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.rows * LEN) {
        return;
    }
    let v = values[i];
//#if SOFT
    let t = chunk.rows * LEN + i;
//#if MASK_OUT
    shares[i] = relu_share(v, values[t]);
//#endif
    values[t] = select(0.0, values[t], v > 0.0);
//#endif
    values[i] = max(v, 0.0);
}
