// Attribution maps to RGBA8 pixels: one workgroup per image sums the channels into a map, finds the
// map's clip scale (Captum's cumulative-sum outlier threshold, src/heatmap.rs `clip_scale`) and writes
// `diverging(map / scale)` into its cell of the atlas. The GPU twin of the CPU heatmap.
// Specialization: WORKGROUP_SIZE, CHANNELS, PLANE (pixels per channel, H * W), WIDTH, HEIGHT (of an
// image), COLUMNS (cells per atlas row), ROW_WORDS (u32 per atlas row: bytes_per_row / 4), FRACTION_BITS
// (see `mass`).
//
// The scale is chosen exactly, whatever the order of the work: every magnitude becomes an integer (a
// fixed-point number scaled to the image's largest magnitude), sums of them are exact, and the
// threshold test `100 * (mass above) <= percent * total` is done in integers. No float atomics.

// Keep in sync with `ColormapUniform` in src/gpu/texture.rs.
struct Colormap {
    // Index within the batch of the group's first image (its cell in the atlas).
    first_image: u32,
    // Images of the group.
    images: u32,
    // Percent of the attribution mass clipped as outliers, in hundredths of a percent (200 for 2%).
    outlier_hundredths: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Colormap;
// The group's attributions, CHANNELS * PLANE values per image (the engine's attribution buffer).
@group(0) @binding(1) var<storage, read> attributions: array<f32>;
// Scratch: the maps, PLANE values per image of the group.
@group(0) @binding(2) var<storage, read_write> maps: array<f32>;
// The atlas, one packed RGBA8 texel per u32, rows ROW_WORDS apart (padded for copy_buffer_to_texture).
@group(0) @binding(3) var<storage, read_write> atlas: array<u32>;

var<workgroup> largest_exponent: atomic<u32>;
var<workgroup> scale_bits: atomic<u32>;

// Wide integers: 16-bit limbs, least significant first. A limb may grow past 16 bits while sums of at
// most 65535 limbs accumulate; `carry` brings it back.
const LIMBS: u32 = 5u;

// Exponent and 24-bit significand of |x|, x finite: |x| = significand * 2^(exponent - 150).
fn split(x: f32) -> vec2<u32> {
    let bits = bitcast<u32>(x) & 0x7fffffffu;
    let e = bits >> 23u;
    if (e == 0u) {
        // Subnormal: no implicit bit, and the exponent of the smallest normals.
        return vec2<u32>(1u, bits);
    }
    return vec2<u32>(e, (bits & 0x7fffffu) | 0x800000u);
}

// |x| in units of 2^(largest - 127 - FRACTION_BITS): the largest magnitude is below 2^(FRACTION_BITS+1)
// units, so PLANE of them sum below 2^64 (the host picks FRACTION_BITS). Bits below the unit are dropped:
// less than PLANE units in a sum, a relative error of at most PLANE * 2^-FRACTION_BITS (about 1e-13 for
// 28 x 28 images), far below the f32 rounding of the values themselves.
fn mass(x: f32, largest: u32) -> array<u32, LIMBS> {
    let s = split(x);
    // The significand's lowest bit sits at bit `shift` of the integer (negative: below the unit).
    let shift = i32(s.x) - i32(largest) + i32(FRACTION_BITS) - 23;
    var out: array<u32, LIMBS>;
    for (var l = 0u; l < LIMBS; l++) {
        // Bits [16 l, 16 l + 16) of significand * 2^shift.
        let at = 16 * i32(l) - shift;
        if (at >= 0 && at < 24) {
            out[l] = (s.y >> u32(at)) & 0xffffu;
        } else if (at < 0 && at > -16) {
            out[l] = (s.y << u32(-at)) & 0xffffu;
        }
    }
    return out;
}

fn carry(x: array<u32, LIMBS>) -> array<u32, LIMBS> {
    var out = x;
    for (var l = 0u; l + 1u < LIMBS; l++) {
        out[l + 1u] += out[l] >> 16u;
        out[l] &= 0xffffu;
    }
    return out;
}

// x * k for carried x and k < 2^16, carried.
fn times(x: array<u32, LIMBS>, k: u32) -> array<u32, LIMBS> {
    var out: array<u32, LIMBS>;
    for (var l = 0u; l < LIMBS; l++) {
        out[l] = x[l] * k;
    }
    // Each limb is now below 2^32, too full to add carries into: move the high halves up first.
    var high: array<u32, LIMBS>;
    for (var l = 0u; l + 1u < LIMBS; l++) {
        high[l + 1u] = out[l] >> 16u;
        out[l] &= 0xffffu;
    }
    for (var l = 0u; l < LIMBS; l++) {
        out[l] += high[l];
    }
    return carry(out);
}

// a <= b for carried a and b.
fn at_most(a: array<u32, LIMBS>, b: array<u32, LIMBS>) -> bool {
    for (var l = LIMBS; l > 0u; l--) {
        if (a[l - 1u] != b[l - 1u]) {
            return a[l - 1u] < b[l - 1u];
        }
    }
    return true;
}

// Blue (-1) through white (0) to red (+1), alpha 255, packed as RGBA8: `heatmap::diverging`.
fn diverging(value: f32) -> u32 {
    let v = clamp(value, -1.0, 1.0);
    let t = 255.0 * (1.0 - abs(v));
    // Rust's round (half away from zero), not WGSL's round (half to even).
    let f = floor(t);
    let fade = u32(select(f, f + 1.0, t - f >= 0.5));
    if (v >= 0.0) {
        return 255u | (fade << 8u) | (fade << 16u) | (255u << 24u);
    }
    return fade | (fade << 8u) | (255u << 16u) | (255u << 24u);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    let image = workgroup_index(wg, groups);
    if (image >= params.images) {
        return;
    }
    let base = image * PLANE;
    if (local == 0u) {
        atomicStore(&largest_exponent, 0u);
        atomicStore(&scale_bits, 0xffffffffu);
    }
    workgroupBarrier();
    for (var p = local; p < PLANE; p += WORKGROUP_SIZE) {
        var sum = 0.0;
        for (var c = 0u; c < CHANNELS; c++) {
            sum += attributions[(image * CHANNELS + c) * PLANE + p];
        }
        maps[base + p] = sum;
        if (sum != 0.0) {
            atomicMax(&largest_exponent, split(sum).x);
        }
    }
    // The maps for the other invocations, and the largest exponent.
    storageBarrier();
    workgroupBarrier();
    let largest = atomicLoad(&largest_exponent);
    // The scale is the smallest magnitude whose mass above it (the magnitudes after it in ascending
    // order, ties broken by position as a stable sort does) is at most the outlier share of the total.
    for (var i = local; i < PLANE; i += WORKGROUP_SIZE) {
        let mi = bitcast<u32>(abs(maps[base + i]));
        var total: array<u32, LIMBS>;
        var above: array<u32, LIMBS>;
        for (var j = 0u; j < PLANE; j++) {
            let vj = maps[base + j];
            let mj = bitcast<u32>(abs(vj));
            // Recomputed rather than stored: the scratch then needs no more room than the attributions.
            let m = mass(vj, largest);
            let after = mj > mi || (mj == mi && j > i);
            // The top limb of one magnitude is zero: it is below 2^64.
            for (var l = 0u; l + 1u < LIMBS; l++) {
                total[l] += m[l];
                above[l] += select(0u, m[l], after);
            }
        }
        total = carry(total);
        above = carry(above);
        let nonzero = total[0] | total[1] | total[2] | total[3] | total[4];
        if (nonzero != 0u && at_most(times(above, 10000u), times(total, params.outlier_hundredths))) {
            atomicMin(&scale_bits, mi);
        }
    }
    workgroupBarrier();
    let bits = atomicLoad(&scale_bits);
    // No candidate: the map is all zeros, and the scale 1.
    let scale = select(bitcast<f32>(bits), 1.0, bits == 0xffffffffu);
    let cell = params.first_image + image;
    let origin = (cell / COLUMNS) * HEIGHT * ROW_WORDS + (cell % COLUMNS) * WIDTH;
    for (var p = local; p < PLANE; p += WORKGROUP_SIZE) {
        atlas[origin + (p / WIDTH) * ROW_WORDS + p % WIDTH] = diverging(maps[base + p] / scale);
    }
}
