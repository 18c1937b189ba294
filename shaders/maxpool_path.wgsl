// The first max-pool of a program, over a first conv's outputs at every path point, made from the
// conv's outputs at the path's two ends (`ends`: every image's z(x), then every z(b)). The conv is
// linear in its input, so at b + alpha (x - b) its output is z(b) + alpha (z(x) - z(b)): the conv runs
// once per image (conv2d_forward.wgsl, ENDS) instead of once per point. With RELU_INPUT the ReLU
// between them is applied first. Values, choices and ties as maxpool_forward.wgsl's; with SOFT, as its
// soft pool: each element's line over the row's cell is v + d s with d = (z(x) - z(b)) cell / 2, the
// pool stores its value, its tangent (the maximum's mean slope) and each element's share of the cell.
// Lanes are the pool's outputs, not rows: a lane loads its windows' ends once per image and then loops
// over the workgroup's rows, whose table entries are the same for every lane. With VEC4 a lane computes
// 4 consecutive outputs and stores them as one vec4: on lavapipe every load or store at an address that
// differs between lanes is a loop over the lanes, and a vec4 shares that loop among 4 values
// (BENCHMARKS.md, "The first conv along the path").
// With SLOPE (points, whose diagnostics need dF/dalpha) each output's derivative along the path is
// stored too: z(x) - z(b) where its maximum was, 0 where none passes. With PACKED (and VEC4) a lane's 4
// choices are one u32, a byte each: the element of the window where the maximum was, or NO_CHOICE
// (accumulate.wgsl reads them; on lavapipe each stored or loaded value costs a loop over the lanes).
// Specialization: WORKGROUP_SIZE, ROWS (rows per workgroup), IN_C, IN_H, IN_W (the conv's output),
// OUT_H, OUT_W, KH, KW, SH, SW, PH, PW (the pool), WIN (= KH * KW); VEC4 when the pool's outputs per
// row are a multiple of 4; with SOFT, SHARES4 when WIN is 4 (each output's shares one vec4).

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> ends: array<f32>;
//#if VEC4
@group(0) @binding(3) var<storage, read_write> output: array<vec4<f32>>;
const PACK: u32 = 4u;
//#else
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
const PACK: u32 = 1u;
//#endif
//#if SOFT
// WIN shares per output, in window order.
//#if SHARES4
@group(0) @binding(4) var<storage, read_write> argmax: array<vec4<f32>>;
//#else
@group(0) @binding(4) var<storage, read_write> argmax: array<f32>;
//#endif
//#else
//#if PACKED
@group(0) @binding(4) var<storage, read_write> argmax: array<u32>;
//#else
//#if VEC4
@group(0) @binding(4) var<storage, read_write> argmax: array<vec4<u32>>;
//#else
@group(0) @binding(4) var<storage, read_write> argmax: array<u32>;
//#endif
//#endif
//#endif
@group(0) @binding(5) var<storage, read> rows: array<Row>;
//#if SLOPE
//#if VEC4
@group(0) @binding(6) var<storage, read_write> slope: array<vec4<f32>>;
//#else
@group(0) @binding(6) var<storage, read_write> slope: array<f32>;
//#endif
//#endif

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = IN_C * OUT_H * OUT_W;
// Each lane's outputs and their window elements.
const SLOTS: u32 = PACK * WIN;
const TILES: u32 = (OUT_LEN + WORKGROUP_SIZE * PACK - 1u) / (WORKGROUP_SIZE * PACK);
const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let place = tile_and_block(g, chunk.rows, ROWS, TILES);
    // The lane's first output (a multiple of PACK, so with VEC4 all four are in range).
    let o0 = (place.x * WORKGROUP_SIZE + lane) * PACK;
    let first = place.y * ROWS;
    if (place.x >= TILES || o0 >= OUT_LEN || first >= chunk.rows) {
        return;
    }
    // The windows' elements in the conv's output, in window order; NONE where padded.
    var at: array<u32, SLOTS>;
    for (var p = 0u; p < PACK; p++) {
        let o = o0 + p;
        let c = o / (OUT_H * OUT_W);
        let oy = (o / OUT_W) % OUT_H;
        let ox = o % OUT_W;
        for (var ky = 0u; ky < KH; ky++) {
            for (var kx = 0u; kx < KW; kx++) {
                let iy = i32(oy * SH + ky) - i32(PH);
                let ix = i32(ox * SW + kx) - i32(PW);
                let inside = iy >= 0 && iy < i32(IN_H) && ix >= 0 && ix < i32(IN_W);
                let j = (c * IN_H + u32(iy)) * IN_W + u32(ix);
                at[p * WIN + ky * KW + kx] = select(NONE, j, inside);
            }
        }
    }
    // The workgroup's rows in runs of one image (a chunk's rows come image by image): the ends are
    // loaded once per run, before the loop over its rows, which then writes none of them (on
    // lavapipe a value a loop writes lives in memory, blended with the loop's mask; loading them
    // in that loop when the image changed made this kernel 1.7x slower at batch 1, BENCHMARKS.md).
    let end = min(first + ROWS, chunk.rows);
    var r = first;
    while (r < end) {
        let image = rows[r].image;
        var hi: array<f32, SLOTS>;
        var lo: array<f32, SLOTS>;
        for (var k = 0u; k < SLOTS; k++) {
            let j = select(at[k], 0u, at[k] == NONE);
            hi[k] = ends[image * IN_LEN + j];
            lo[k] = ends[(chunk.images + image) * IN_LEN + j];
        }
        for (; r < end && rows[r].image == image; r++) {
            let alpha = rows[r].alpha;
//#if SOFT
            let half = 0.5 * rows[r].cell;
//#endif
            var values: array<f32, PACK>;
//#if SOFT
            var slopes: array<f32, PACK>;
            var shares: array<array<f32, WIN>, PACK>;
//#else
            var choices: array<u32, PACK>;
            var elements: array<u32, PACK>;
            var slopes: array<f32, PACK>;
//#endif
            for (var p = 0u; p < PACK; p++) {
                var best = 0.0;
                var best_at = NONE;
                var best_e = 0u;
                var best_slope = 0.0;
//#if SOFT
                var lines: array<f32, WIN>;
                var tangents: array<f32, WIN>;
                var valid: array<bool, WIN>;
//#endif
                for (var e = 0u; e < WIN; e++) {
                    let k = p * WIN + e;
                    // As path.wgsl makes points: alpha = 1 gives z(x) exactly.
                    var v = select(lo[k] + alpha * (hi[k] - lo[k]), hi[k], alpha == 1.0);
//#if SOFT
                    lines[e] = v;
                    tangents[e] = (hi[k] - lo[k]) * half;
                    valid[e] = at[k] != NONE;
//#endif
                    if (at[k] == NONE) {
                        continue;
                    }
//#if RELU_INPUT
                    v = max(v, 0.0);
//#endif
                    if (best_at == NONE || v > best) {
                        best = v;
                        best_at = at[k];
                        best_e = e;
                        best_slope = hi[k] - lo[k];
                    }
                }
//#if RELU_INPUT
                // No gradient passes the ReLU where the window's maximum is not positive.
                best_at = select(NONE, best_at, best > 0.0);
//#endif
                values[p] = best;
//#if SOFT
//#if RELU_INPUT
                shares[p] = window_shares(lines, tangents, valid, true);
//#else
                shares[p] = window_shares(lines, tangents, valid, false);
//#endif
                slopes[p] = mean_slope(shares[p], tangents);
//#else
                choices[p] = best_at;
                elements[p] = select(NO_CHOICE, best_e, best_at != NONE);
                slopes[p] = select(0.0, best_slope, best_at != NONE);
//#endif
            }
            let at_row = (r * OUT_LEN + o0) / PACK;
//#if SOFT
            let at_tangent = ((chunk.rows + r) * OUT_LEN + o0) / PACK;
//#endif
//#if VEC4
            output[at_row] = vec4<f32>(values[0], values[1], values[2], values[3]);
//#if SOFT
            output[at_tangent] = vec4<f32>(slopes[0], slopes[1], slopes[2], slopes[3]);
//#else
//#if PACKED
            argmax[at_row] = elements[0] | (elements[1] << 8u) | (elements[2] << 16u) | (elements[3] << 24u);
//#else
            argmax[at_row] = vec4<u32>(choices[0], choices[1], choices[2], choices[3]);
//#endif
//#if SLOPE
            slope[at_row] = vec4<f32>(slopes[0], slopes[1], slopes[2], slopes[3]);
//#endif
//#endif
//#else
            output[at_row] = values[0];
//#if SOFT
            output[at_tangent] = slopes[0];
//#else
            argmax[at_row] = choices[0];
//#if SLOPE
            slope[at_row] = slopes[0];
//#endif
//#endif
//#endif
//#if SOFT
            for (var p = 0u; p < PACK; p++) {
                let o = r * OUT_LEN + o0 + p;
//#if SHARES4
                argmax[o] = vec4<f32>(shares[p][0], shares[p][1], shares[p][2], shares[p][3]);
//#else
                for (var e = 0u; e < WIN; e++) {
                    argmax[o * WIN + e] = shares[p][e];
                }
//#endif
            }
//#endif
        }
    }
}
