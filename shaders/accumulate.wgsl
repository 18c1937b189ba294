// Adds each image's weighted gradients, sum_k w_k grad_k, to its running total, in row order. The total
// lives on the GPU across the chunks of a group, so splitting an image's steps over chunks performs the
// same additions in the same order: chunked and unchunked results are bit-identical.
// Specialization: WORKGROUP_SIZE, LEN (values per image).

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<Row>;
@group(0) @binding(4) var<storage, read> spans: array<Span>;
@group(0) @binding(5) var<storage, read_write> total: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.spans * LEN) {
        return;
    }
    let span = spans[i / LEN];
    let d = i % LEN;
    let at = span.image * LEN + d;
    var acc = total[at];
    for (var k = 0u; k < span.count; k++) {
        let r = span.first_row + k;
        acc = acc + rows[r].weight * grad[r * LEN + d];
    }
    total[at] = acc;
}
