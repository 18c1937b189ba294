// Declarations shared by every kernel; src/gpu/kernels.rs prepends this file to each shader.
// Keep the structs in sync with src/gpu/layout.rs.

// Invocations per workgroup of every kernel.
const WORKGROUP_SIZE: u32 = 64u;

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

// One path point: b + alpha (x - b) of one image, with its quadrature weight.
struct Row {
    // Index of the image within the group.
    image: u32,
    // Index of the logit whose gradient is taken (the target class).
    logit: u32,
    alpha: f32,
    weight: f32,
}

// Consecutive gradient rows of one image within a chunk.
struct Span {
    image: u32,
    first_row: u32,
    count: u32,
    _pad: u32,
}

// Static shape of one layer (or of the input, for the kernels that are not layers).
struct Layer {
    in_c: u32,
    in_h: u32,
    in_w: u32,
    in_len: u32,
    out_c: u32,
    out_h: u32,
    out_w: u32,
    out_len: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    _pad0: u32,
    _pad1: u32,
}

// Dispatches are two-dimensional when one dimension would exceed the device's workgroup limit.
fn invocation_index(wg: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
    return (wg.y * groups.x + wg.x) * WORKGROUP_SIZE + local;
}

fn workgroup_index(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wg.y * groups.x + wg.x;
}

// Pooling backward: the outputs along one axis whose window covers input position `at`: [first, last] (empty if first > last).
fn covering(at: u32, kernel: u32, stride: u32, pad: u32, count: u32) -> vec2<i32> {
    let hi = i32(at + pad);
    let lo = hi - i32(kernel) + 1;
    let first = select((lo + i32(stride) - 1) / i32(stride), 0, lo <= 0);
    let last = min(hi / i32(stride), i32(count) - 1);
    return vec2<i32>(first, last);
}

