// Conv2d forward, with the bias, optionally the ReLU after it (flag RELU) and optionally the max-pool
// after that (flag POOL: windows of KPH x KPW with the same stride and no padding), so that the conv's
// own output is never stored.
// With SOFT the conv also carries the tangent rows (without the bias) and the ReLU stores each value's
// open share of the cell (MASK_OUT; see common.wgsl). Soft programs pool in a pass of their own.
// With ENDS the rows are every image's input then every baseline instead of the chunk's path points (a
// first layer folded along the path, see maxpool_path.wgsl), and the lanes of a workgroup are
// LANE_BLOCKS blocks of OCB output channels for each of WORKGROUP_SIZE / LANE_BLOCKS rows: at batch 1
// there are 2 rows, and on a CPU adapter a workgroup costs its full width however few lanes it uses.
// Lanes are rows; each workgroup computes one tile for WORKGROUP_SIZE rows: OCB output channels times
// PX neighbouring outputs (pooled outputs with POOL) of one output row. Each input value loaded serves
// OCB * KW products and each weight (read at a uniform address) PX products or more.
// Specialization: WORKGROUP_SIZE, IN_C, IN_H, IN_W, OUT_C, OUT_H, OUT_W, KH, KW, SH, SW, PH, PW, OCB, PX,
// with POOL also KPH, KPW, POOL_H, POOL_W, with ENDS LANE_BLOCKS. `param(i)` reads the weights [OUT_C, IN_C, KH, KW], then
// the bias [OUT_C].

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
//#if POOL
@group(0) @binding(4) var<storage, read_write> argmax: array<u32>;

// A tile is KPH conv rows by PX * KPW conv columns: PX windows of one pooled row.
const TILE_H: u32 = KPH;
const TILE_W: u32 = PX * KPW;
const GRID_H: u32 = POOL_H;
const GRID_W: u32 = POOL_W;
const STORED: u32 = OUT_C * POOL_H * POOL_W;
//#else
//#if MASK_OUT
@group(0) @binding(4) var<storage, read_write> shares: array<f32>;
//#endif
const TILE_H: u32 = 1u;
const TILE_W: u32 = PX;
const GRID_H: u32 = OUT_H;
const GRID_W: u32 = OUT_W;
const STORED: u32 = OUT_C * OUT_H * OUT_W;
//#endif

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const BIAS: u32 = OUT_C * IN_C * KH * KW;
//#if ENDS
const GROUP_ROWS: u32 = WORKGROUP_SIZE / LANE_BLOCKS;
//#else
const LANE_BLOCKS: u32 = 1u;
const GROUP_ROWS: u32 = WORKGROUP_SIZE;
//#endif
const OC_BLOCKS: u32 = (OUT_C + OCB * LANE_BLOCKS - 1u) / (OCB * LANE_BLOCKS);
const STRIPS: u32 = (GRID_W + PX - 1u) / PX;
const TILES: u32 = OC_BLOCKS * GRID_H * STRIPS;
// Inputs under one row of a tile.
const SPAN: u32 = (TILE_W - 1u) * SW + KW;
const NONE: u32 = 0xffffffffu;

fn row_count() -> u32 {
//#if ENDS
    return 2u * chunk.images;
//#else
    return chunk.rows;
//#endif
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let place = tile_and_block(g, row_count(), GROUP_ROWS, TILES);
    let first = place.y * GROUP_ROWS;
    if (place.x >= TILES || first >= row_count()) {
        return;
    }
    let tile = place.x;
    let oc0 = ((tile / (GRID_H * STRIPS)) * LANE_BLOCKS + lane % LANE_BLOCKS) * OCB;
    let gy = (tile / STRIPS) % GRID_H;
    let gx0 = (tile % STRIPS) * PX;
    // Top-left conv output of the tile.
    let oy0 = gy * TILE_H;
    let ox0 = gx0 * (TILE_W / PX);
    let r = first + lane / LANE_BLOCKS;
    // Lanes past the last row leave at once: on a CPU adapter a group of SIMD lanes that all left
    // skips the tile's loops (BENCHMARKS.md).
    if (r >= row_count()) {
        return;
    }
    let row = r;
    let x = row * IN_LEN;

    var acc: array<array<array<f32, TILE_W>, TILE_H>, OCB>;
//#if SOFT
    let xt = (chunk.rows + row) * IN_LEN;
    var tacc: array<array<array<f32, TILE_W>, TILE_H>, OCB>;
//#endif
    for (var ic = 0u; ic < IN_C; ic++) {
        // Summing each input channel apart, then the channels, keeps the rounding error small.
        var part: array<array<array<f32, TILE_W>, TILE_H>, OCB>;
//#if SOFT
        var tpart: array<array<array<f32, TILE_W>, TILE_H>, OCB>;
//#endif
        for (var ky = 0u; ky < KH; ky++) {
            // The inputs under each tile row for this tap row; zero outside the input (padding).
            // (Every loop that indexes a register array has a constant trip count, so the compiler
            // unrolls it and keeps the arrays in registers.)
            var xs: array<array<f32, SPAN>, TILE_H>;
//#if SOFT
            var ts: array<array<f32, SPAN>, TILE_H>;
//#endif
            for (var ty = 0u; ty < TILE_H; ty++) {
                let iy = i32((oy0 + ty) * SH + ky) - i32(PH);
                let inside = iy >= 0 && iy < i32(IN_H);
                let line = (ic * IN_H + u32(select(0, iy, inside))) * IN_W;
                for (var q = 0u; q < SPAN; q++) {
                    let ix = i32(ox0 * SW + q) - i32(PW);
                    if (inside && ix >= 0 && ix < i32(IN_W)) {
                        xs[ty][q] = input[x + line + u32(ix)];
//#if SOFT
                        ts[ty][q] = input[xt + line + u32(ix)];
//#endif
                    }
                }
            }
            for (var c = 0u; c < OCB; c++) {
                let w = ((min(oc0 + c, OUT_C - 1u) * IN_C + ic) * KH + ky) * KW;
                for (var kx = 0u; kx < KW; kx++) {
                    let wv = param(w + kx);
                    for (var ty = 0u; ty < TILE_H; ty++) {
                        for (var p = 0u; p < TILE_W; p++) {
                            part[c][ty][p] += wv * xs[ty][p * SW + kx];
//#if SOFT
                            tpart[c][ty][p] += wv * ts[ty][p * SW + kx];
//#endif
                        }
                    }
                }
            }
        }
        for (var c = 0u; c < OCB; c++) {
            for (var ty = 0u; ty < TILE_H; ty++) {
                for (var p = 0u; p < TILE_W; p++) {
                    acc[c][ty][p] += part[c][ty][p];
//#if SOFT
                    tacc[c][ty][p] += tpart[c][ty][p];
//#endif
                }
            }
        }
    }
    if (r >= row_count()) {
        return;
    }
    for (var c = 0u; c < OCB; c++) {
        let oc = oc0 + c;
        if (oc >= OUT_C) {
            break;
        }
        // The bias goes last: added first, it would round away the low bits of small products (near a
        // zero baseline every product is small).
        let b = param(BIAS + oc);
//#if POOL
        for (var p = 0u; p < PX; p++) {
            let px = gx0 + p;
            if (px >= POOL_W) {
                break;
            }
            // The first maximum in row-major window order, as max-pooling in PyTorch.
            var best = 0.0;
            var best_at = NONE;
            for (var dy = 0u; dy < KPH; dy++) {
                for (var dx = 0u; dx < KPW; dx++) {
                    var v = acc[c][dy][p * KPW + dx] + b;
//#if RELU
                    v = max(v, 0.0);
//#endif
                    if (best_at == NONE || v > best) {
                        best = v;
                        best_at = (oc * OUT_H + oy0 + dy) * OUT_W + px * KPW + dx;
                    }
                }
            }
//#if RELU
            // No gradient passes the ReLU where the window's maximum is not positive.
            best_at = select(NONE, best_at, best > 0.0);
//#endif
            let o = (oc * POOL_H + gy) * POOL_W + px;
            output[r * STORED + o] = best;
            argmax[r * STORED + o] = best_at;
        }
//#else
        for (var p = 0u; p < PX; p++) {
            let ox = ox0 + p;
            if (ox >= OUT_W) {
                break;
            }
            let o = (oc * OUT_H + oy0) * OUT_W + ox;
            var v = acc[c][0][p] + b;
//#if SOFT
            var d = tacc[c][0][p];
//#if RELU
//#if MASK_OUT
            shares[r * STORED + o] = relu_share(v, d);
//#endif
            d = select(0.0, d, v > 0.0);
//#endif
            output[(chunk.rows + r) * STORED + o] = d;
//#endif
//#if RELU
            v = max(v, 0.0);
//#endif
            output[r * STORED + o] = v;
        }
//#endif
    }
}
