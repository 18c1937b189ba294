// Path points: row r holds b + alpha (x - b) of its image; alpha = 1 gives x exactly. With SOFT, row
// rows + r holds the path's direction scaled to the row's cell, (x - b) * cell / 2 (see common.wgsl).
// Specialization: WORKGROUP_SIZE, LEN (values per image).

@group(0) @binding(0) var<uniform> chunk: Chunk;
// The group's inputs, then its baselines.
@group(0) @binding(1) var<storage, read> images: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<Row>;
@group(0) @binding(4) var<storage, read_write> points: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.rows * LEN) {
        return;
    }
    let row = rows[i / LEN];
    let at = row.image * LEN + i % LEN;
    let x = images[at];
    let b = images[chunk.images * LEN + at];
    points[i] = select(b + row.alpha * (x - b), x, row.alpha == 1.0);
//#if SOFT
    points[chunk.rows * LEN + i] = (x - b) * (0.5 * row.cell);
//#endif
}
