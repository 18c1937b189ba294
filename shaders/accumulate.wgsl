// Adds each row's weighted gradient, w * dF/dx (w * dF/dalpha * dF/dx for IDG), to its image's
// accumulator `slot`, in row order. The accumulators live on the GPU across the chunks of a group, so
// splitting an image's steps over chunks performs the same additions in the same order: chunked and
// unchunked results are bit-identical.
// Specialization: WORKGROUP_SIZE, LEN (values per image).

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<Row>;
@group(0) @binding(4) var<storage, read> spans: array<Span>;
// Per image, `chunk.slots` accumulators of LEN values.
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
    let base = span.image * chunk.slots;
    // A running sum per accumulator, written back when the row's slot changes.
    var slot = rows[span.first_row].slot;
    var acc = total[(base + slot) * LEN + d];
    for (var k = 0u; k < span.count; k++) {
        let row = rows[span.first_row + k];
        if (row.slot != slot) {
            total[(base + slot) * LEN + d] = acc;
            slot = row.slot;
            acc = total[(base + slot) * LEN + d];
        }
        let w = select(row.weight, row.weight * row.slope, chunk.idg != 0u);
        acc = acc + w * grad[(span.first_row + k) * LEN + d];
    }
    total[(base + slot) * LEN + d] = acc;
}
