// ReLU forward, in place, where it cannot be fused into the conv or linear before it. Its output serves
// the backward pass as the mask (out > 0 exactly when in > 0).
// Specialization: WORKGROUP_SIZE, LEN.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read_write> values: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.rows * LEN) {
        return;
    }
    values[i] = max(values[i], 0.0);
}
