// Attributions: (x - b) times the accumulated weighted gradient, in place.
// Specialization: WORKGROUP_SIZE, LEN (values per image).

@group(0) @binding(0) var<uniform> chunk: Chunk;
// The group's inputs, then its baselines.
@group(0) @binding(2) var<storage, read> images: array<f32>;
@group(0) @binding(4) var<storage, read_write> total: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.images * LEN) {
        return;
    }
    total[i] = (images[i] - images[chunk.images * LEN + i]) * total[i];
}
