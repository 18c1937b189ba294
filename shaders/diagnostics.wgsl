// Per row: the target logit F at the path point and, for gradient rows, the L2 norm of the input
// gradient. One workgroup per row; the norm is a fixed-order tree reduction (deterministic).
// Specialization: WORKGROUP_SIZE (a power of two), LEN (values per image), CLASSES.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<Row>;
// Two values per row of the group: F, |grad F|.
@group(0) @binding(5) var<storage, read_write> diagnostics: array<f32>;

var<workgroup> partial: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let r = workgroup_index(wg, groups);
    if (r >= chunk.rows) {
        return;
    }
    var sum = 0.0;
    if (r < chunk.grad_rows) {
        for (var d = local; d < LEN; d += WORKGROUP_SIZE) {
            let g = grad[r * LEN + d];
            sum += g * g;
        }
    }
    partial[local] = sum;
    workgroupBarrier();
    for (var width = WORKGROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            partial[local] += partial[local + width];
        }
        workgroupBarrier();
    }
    if (local == 0u) {
        let out = (chunk.first_row + r) * 2u;
        diagnostics[out] = logits[r * CLASSES + rows[r].logit];
        diagnostics[out + 1u] = sqrt(partial[0]);
    }
}
