// Per row: the target logit F at the path point and, for gradient rows, |dF/dx|, dF/dalpha and the
// gradient's fingerprint (see `Row`), written into the row table. One workgroup per row; the sums are
// fixed-order tree reductions (deterministic). With ROW_LANES each lane is a row instead and sums its
// values in order, in blocks: on a CPU adapter a workgroup barrier is costly, and lanes over rows
// need none.
// With FOLDED (the first conv's input gradient is taken after the sum, see accumulate.wgsl) the
// gradient is the max-pool's output gradient after that conv, and dF/dalpha its dot product with the
// pool's outputs' derivatives along the path (maxpool_path.wgsl's SLOPE: z(x) - z(b) for the conv's
// outputs z at the path's ends, where each window's maximum was); |dF/dx| and the fingerprint are not
// computed (0).
// Specialization: WORKGROUP_SIZE (a power of two without ROW_LANES), LEN (values per row of the
// gradient), CLASSES;
// VEC4 (with ROW_LANES and FOLDED, LEN a multiple of 4): the gradient and the slopes are read 4 at a
// time (on lavapipe a read at an address that differs between lanes is a loop over the lanes, which a
// vec4 shares among 4 values).

@group(0) @binding(0) var<uniform> chunk: Chunk;
//#if VEC4
@group(0) @binding(2) var<storage, read> grad: array<vec4<f32>>;
//#else
@group(0) @binding(2) var<storage, read> grad: array<f32>;
//#endif
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> rows: array<Row>;
//#if FOLDED
//#if VEC4
@group(0) @binding(5) var<storage, read> slope: array<vec4<f32>>;
//#else
@group(0) @binding(5) var<storage, read> slope: array<f32>;
//#endif
//#else
// The group's inputs, then its baselines.
@group(0) @binding(5) var<storage, read> images: array<f32>;
//#endif

// What value d of a gradient row of image `image` adds to (|g|^2, g . (x - b), g . p), given its
// gradient g (and with FOLDED its slope along the path, `s`).
fn term(image: u32, d: u32, g: f32, s: f32) -> vec3<f32> {
//#if FOLDED
    return vec3<f32>(0.0, g * s, 0.0);
//#else
    let delta = images[image * LEN + d] - images[(chunk.images + image) * LEN + d];
    return g * vec3<f32>(g, delta, probe_weight(d));
//#endif
}

// The terms of values d0 ..< d1, step `step`, of gradient row r (of image `image`), summed in order.
fn sums(r: u32, image: u32, d0: u32, d1: u32, step: u32) -> vec3<f32> {
    var sum = vec3<f32>(0.0);
//#if VEC4
    // (Only with ROW_LANES: step 1, d0 and d1 multiples of 4.)
    for (var d = d0; d < d1; d += 4u) {
        let g = grad[(r * LEN + d) / 4u];
        let s = slope[(r * LEN + d) / 4u];
        for (var q = 0u; q < 4u; q++) {
            sum += term(image, d + q, g[q], s[q]);
        }
    }
//#else
    for (var d = d0; d < d1; d += step) {
//#if FOLDED
        let s = slope[r * LEN + d];
//#else
        let s = 0.0;
//#endif
        sum += term(image, d, grad[r * LEN + d], s);
    }
//#endif
    return sum;
}

fn write(r: u32, sum: vec3<f32>) {
    rows[r].f = logits[r * CLASSES + rows[r].logit];
    rows[r].grad_norm = sqrt(sum.x);
    rows[r].slope = sum.y;
    rows[r].probe = sum.z;
}

//#if ROW_LANES
// Values summed apart before they join the row's total, to keep the rounding error small.
const BLOCK: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let r = invocation_index(wg, groups, local);
    if (r >= chunk.rows) {
        return;
    }
    var sum = vec3<f32>(0.0);
    if (r < chunk.grad_rows) {
        let image = rows[r].image;
        for (var d0 = 0u; d0 < LEN; d0 += BLOCK) {
            sum += sums(r, image, d0, min(d0 + BLOCK, LEN), 1u);
        }
    }
    write(r, sum);
}
//#else
var<workgroup> partial: array<vec3<f32>, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let r = workgroup_index(wg, groups);
    if (r >= chunk.rows) {
        return;
    }
    var sum = vec3<f32>(0.0);
    if (r < chunk.grad_rows) {
        sum = sums(r, rows[r].image, local, LEN, WORKGROUP_SIZE);
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
        write(r, partial[0]);
    }
}
//#endif
