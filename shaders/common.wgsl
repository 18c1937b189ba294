// Declarations shared by every kernel. The specialization header before this file defines the kernel's
// constants, WORKGROUP_SIZE among them. Keep the structs in sync with src/gpu/layout.rs.
//
// Activations are stored row by row: value f of row r is at r * LEN + f, where a row is one path point
// of one image and LEN the layer's values per row. In the layer kernels the lanes of a workgroup are
// consecutive rows and the workgroup's position in the layer (its tile) is uniform, so index arithmetic
// and bounds tests are scalar, and weights are read at uniform addresses.

// Per-chunk values, written once before each chunk's submission.
struct Chunk {
    // Rows whose input gradient is computed: the first `grad_rows` rows of the row table.
    grad_rows: u32,
    // All rows: the gradient rows followed by forward-only rows.
    rows: u32,
    // Entries of the span table.
    spans: u32,
    // Images of the current group.
    images: u32,
    // Index of this chunk's first row among all rows of its group (where its diagnostics go).
    first_row: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// One path point: b + alpha (x - b) of one image, with its quadrature weight. The host writes the first
// four fields; diagnostics.wgsl fills in the rest, and the engine copies them out after the chunk.
struct Row {
    // Index of the image within the group.
    image: u32,
    // Index of the logit whose gradient is taken (the target class).
    logit: u32,
    alpha: f32,
    weight: f32,
    // F at the point.
    f: f32,
    // For gradient rows: |dF/dx|, dF/dalpha = dF/dx . (x - b), and dF/dx . p for the fixed pseudo-random
    // vector p of probe_weight (a fingerprint: equal gradients have equal fingerprints).
    grad_norm: f32,
    slope: f32,
    probe: f32,
}

// Consecutive gradient rows of one image within a chunk.
struct Span {
    image: u32,
    first_row: u32,
    count: u32,
    _pad: u32,
}

// Hyperparameters of one optimizer step (sgd.wgsl, adam.wgsl), written before each training step.
struct Step {
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    // 1 - beta1^t and 1 - beta2^t for step t (counted from 1).
    correction1: f32,
    correction2: f32,
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Dispatches are two-dimensional when one dimension would exceed the device's workgroup limit.
fn workgroup_index(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wg.y * groups.x + wg.x;
}

fn invocation_index(wg: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
    return workgroup_index(wg, groups) * WORKGROUP_SIZE + local;
}

// Component d of the fingerprint vector, in [-1, 1): a PCG hash of d, the same on every device.
fn probe_weight(d: u32) -> f32 {
    var h = d * 747796405u + 2891336453u;
    h = ((h >> ((h >> 28u) + 4u)) ^ h) * 277803737u;
    h = (h >> 22u) ^ h;
    return f32(h) * (2.0 / 4294967296.0) - 1.0;
}

// Pooling backward: the outputs along one axis whose window covers input position `at`: [first, last]
// (empty if first > last).
fn covering(at: u32, kernel: u32, stride: u32, pad: u32, count: u32) -> vec2<i32> {
    let hi = i32(at + pad);
    let lo = hi - i32(kernel) + 1;
    let first = select((lo + i32(stride) - 1) / i32(stride), 0, lo <= 0);
    let last = min(hi / i32(stride), i32(count) - 1);
    return vec2<i32>(first, last);
}
