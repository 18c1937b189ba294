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
    // Accumulators per image (`Row.slot` picks one): 1 for a quadrature, one per node for adaptive rounds.
    slots: u32,
    // 1 for Integrated Decision Gradients: each row's weight is multiplied by its dF/dalpha.
    idg: u32,
    _pad0: u32,
    _pad1: u32,
}

// One path point: b + alpha (x - b) of one image, with its quadrature weight. The host writes the first
// six fields; diagnostics.wgsl fills in the rest, and the engine copies them out after the chunk.
struct Row {
    // Index of the image within the group.
    image: u32,
    // Index of the logit whose gradient is taken (the target class).
    logit: u32,
    alpha: f32,
    weight: f32,
    // Width of the cell [alpha - cell / 2, alpha + cell / 2] the row stands for (soft kernels average
    // ReLU masks and max-pool choices over it; 0 for a point).
    cell: f32,
    // Which of its image's accumulators the row's weighted gradient goes to.
    slot: u32,
    // F at the point.
    f: f32,
    // For gradient rows: |dF/dx|, dF/dalpha = dF/dx . (x - b), and dF/dx . p for the fixed pseudo-random
    // vector p of probe_weight (a fingerprint: equal gradients have equal fingerprints).
    grad_norm: f32,
    slope: f32,
    probe: f32,
    // Written by the host: 1 where the row is the first in its group to add to accumulator `slot` of
    // its image, which accumulate.wgsl then starts from zero instead of reading.
    fresh: u32,
    _pad1: u32,
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

// A packed max-pool choice (a byte: the window element of the maximum) where no element passes.
const NO_CHOICE: u32 = 255u;

// Dispatches are two-dimensional when one dimension would exceed the device's workgroup limit.
fn workgroup_index(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wg.y * groups.x + wg.x;
}

fn invocation_index(wg: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
    return workgroup_index(wg, groups) * WORKGROUP_SIZE + local;
}

// Workgroup g's tile (x) and block of rows (y) in a grid of `tiles` tiles for every block of
// `per_block` of `count` rows; x >= tiles for the spare workgroups of a two-dimensional grid. lavapipe
// hands each of its threads one contiguous range of a grid's workgroups: in block order, with a few
// blocks, one thread would get the full blocks and another the last, part-empty one, so up to 8 blocks
// the block varies fastest. With more, block order keeps a block's rows in cache across its tiles and
// the ranges are balanced anyway (BENCHMARKS.md, "Row blocks vary fastest").
fn tile_and_block(g: u32, count: u32, per_block: u32, tiles: u32) -> vec2<u32> {
    let blocks = max((count + per_block - 1u) / per_block, 1u);
    if (blocks <= 8u) {
        return vec2<u32>(g / blocks, g % blocks);
    }
    return vec2<u32>(g % tiles, g / tiles);
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

// Soft kernels (flag SOFT): a row stands for a cell of path points, its tangent rows hold the derivative
// of each activation along the path scaled by the cell's half-width, so that over the cell a value is the
// line v + d s for s in [-1, 1]. ReLU masks and max-pool choices become their shares of the cell. A
// max-pool's tangent is each line's slope by its share, the maximum's mean slope over the cell (about 10%
// lower error than the winner's slope on the shipped CNN); a ReLU's stays its input's where open at the
// centre (d times the open share was worse on a conv-ReLU-conv net; BENCHMARKS.md).

// Share of s in [-1, 1] on which v + d s > 0 (at d = 0, the choice at the point).
fn relu_share(v: f32, d: f32) -> f32 {
    if (d == 0.0) {
        return select(0.0, 1.0, v > 0.0);
    }
    let t = -v / d;
    return select(clamp(0.5 * (t + 1.0), 0.0, 1.0), clamp(0.5 * (1.0 - t), 0.0, 1.0), d > 0.0);
}

//#if WINDOW
// For each valid line v[i] + d[i] s, the share of s in [-1, 1] on which it is the first maximum among
// the valid lines; with `relu`, a zero line comes first (so a line must also be positive). Each line is
// the maximum on one interval (the upper envelope of lines is convex): the intersection of the
// half-lines on which it beats each other line. (Indices are constants once the loops unroll.)
fn window_shares(v: array<f32, WIN>, d: array<f32, WIN>, valid: array<bool, WIN>, relu: bool) -> array<f32, WIN> {
    var lo: array<f32, WIN>;
    var hi: array<f32, WIN>;
    var none: array<bool, WIN>;
    for (var i = 0u; i < WIN; i++) {
        lo[i] = -1.0;
        hi[i] = 1.0;
        // Against the zero line, which comes before every line in tie order.
        none[i] = !valid[i] || (relu && d[i] == 0.0 && v[i] <= 0.0);
        if (relu && d[i] != 0.0) {
            let t = -v[i] / d[i];
            lo[i] = select(lo[i], max(lo[i], t), d[i] > 0.0);
            hi[i] = select(min(hi[i], t), hi[i], d[i] > 0.0);
        }
    }
    // Each pair once: lines i and j cross where lines j and i do (the same quotient, both signs
    // flipped), which bounds one from below and the other from above. (j runs from 0, not i + 1:
    // constant bounds unroll, and on lavapipe arrays indexed in a loop that does not are scratch
    // memory, 8x slower.)
    for (var i = 0u; i < WIN; i++) {
        for (var j = 0u; j < WIN; j++) {
            if (j <= i || !valid[i] || !valid[j]) {
                continue;
            }
            let dv = v[i] - v[j];
            let dd = d[i] - d[j];
            if (dd == 0.0) {
                // Parallel: the lower one never leads; on a tie the first in window order does.
                none[i] = none[i] || dv < 0.0;
                none[j] = none[j] || dv >= 0.0;
            } else {
                let t = -dv / dd;
                if (dd > 0.0) {
                    lo[i] = max(lo[i], t);
                    hi[j] = min(hi[j], t);
                } else {
                    hi[i] = min(hi[i], t);
                    lo[j] = max(lo[j], t);
                }
            }
        }
    }
    var out: array<f32, WIN>;
    for (var i = 0u; i < WIN; i++) {
        out[i] = select(clamp(0.5 * (hi[i] - lo[i]), 0.0, 1.0), 0.0, none[i]);
    }
    return out;
}

// A soft max-pool's tangent: the maximum's mean slope over the cell, each line's slope d[i] by its
// share (with a ReLU before the pool, the zero line's share adds nothing).
fn mean_slope(share: array<f32, WIN>, d: array<f32, WIN>) -> f32 {
    var slope = 0.0;
    for (var i = 0u; i < WIN; i++) {
        slope += share[i] * d[i];
    }
    return slope;
}
//#endif

//#if WINOGRAD
// Winograd's F(2x2, 3x3) transforms (src/ops/winograd.rs), for kernels that load 4 x SPAN values.
// B^T d B of the 4x4 patch of `d` whose first column is 2 p.
fn input_transform(d: ptr<function, array<array<f32, SPAN>, 4>>, p: u32) -> array<f32, 16> {
    // Unrolled: on lavapipe an array indexed in a loop lives in memory (kernels.rs, `unroll`).
    var t: array<array<f32, 4>, 4>;
    //#unroll c 4
    t[0][c] = (*d)[0][2u * p + c] - (*d)[2][2u * p + c];
    t[1][c] = (*d)[1][2u * p + c] + (*d)[2][2u * p + c];
    t[2][c] = (*d)[2][2u * p + c] - (*d)[1][2u * p + c];
    t[3][c] = (*d)[1][2u * p + c] - (*d)[3][2u * p + c];
    //#end
    var v: array<f32, 16>;
    //#unroll k 4
    v[k * 4u] = t[k][0] - t[k][2];
    v[k * 4u + 1u] = t[k][1] + t[k][2];
    v[k * 4u + 2u] = t[k][2] - t[k][1];
    v[k * 4u + 3u] = t[k][1] - t[k][3];
    //#end
    return v;
}

// A^T m A: the block's 2x2 outputs in row-major order.
fn output_transform(m: array<f32, 16>) -> array<f32, 4> {
    var s0: array<f32, 4>;
    var s1: array<f32, 4>;
    //#unroll j 4
    s0[j] = m[j] + m[4u + j] + m[8u + j];
    s1[j] = m[4u + j] - m[8u + j] - m[12u + j];
    //#end
    return array<f32, 4>(s0[0] + s0[1] + s0[2], s0[1] - s0[2] - s0[3], s1[0] + s1[1] + s1[2],
                         s1[1] - s1[2] - s1[3]);
}
//#endif
