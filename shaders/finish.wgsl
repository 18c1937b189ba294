// Attributions: (x - b) times the weighted sum of each image's accumulators.
// Specialization: WORKGROUP_SIZE, LEN (values per image).

@group(0) @binding(0) var<uniform> chunk: Chunk;
// The group's inputs, then its baselines.
@group(0) @binding(2) var<storage, read> images: array<f32>;
// Per image, `chunk.slots` accumulators of LEN values.
@group(0) @binding(3) var<storage, read> total: array<f32>;
// Per image, the weight of each accumulator.
@group(0) @binding(4) var<storage, read> slot_weights: array<f32>;
@group(0) @binding(5) var<storage, read_write> attributions: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.images * LEN) {
        return;
    }
    let image = i / LEN;
    let d = i % LEN;
    var sum = 0.0;
    for (var s = 0u; s < chunk.slots; s++) {
        sum += slot_weights[image * chunk.slots + s] * total[(image * chunk.slots + s) * LEN + d];
    }
    attributions[i] = (images[i] - images[chunk.images * LEN + i]) * sum;
}
