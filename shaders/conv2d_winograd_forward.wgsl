// Conv2d 3x3 stride 1 by Winograd's F(2x2, 3x3) (src/ops/winograd.rs): 16 multiplications per 2x2 block
// of outputs and channel pair instead of 36. Then the bias and the ReLU (flag RELU), and with POOL a 2x2
// stride-2 max-pool: each 2x2 block of conv outputs is one pool window, so the conv's own output is never
// stored. Without POOL the blocks are stored; with SOFT the conv also carries the tangent rows (without
// the bias) and the ReLU stores each value's open share of the cell (MASK_OUT), as conv2d_forward.wgsl.
// Lanes are rows; each workgroup computes OCB output channels times PX neighbouring blocks of one block
// row. Per input channel, each lane loads the 4 x (2 PX + 2) inputs under its blocks, transforms them, and
// multiplies them with the transformed weights, read at uniform addresses.
// With CHANNEL_LOOP (with POOL, not SOFT; Tiling::winograd_channel_loop) a workgroup computes every
// output channel of PX blocks instead, in a loop over output channels; see that main for why.
// With CHECKED (point programs, with POOL) the kernel picks the pool's winners (and with RELU whether
// they are positive) as the direct kernel (conv2d_forward.wgsl) would on the same inputs: a rounding
// bound (ops::winograd::forward_bounds) tells which windows' decisions it can vouch for, and the others
// are summed again directly, in the direct kernel's order, which also gives their stored values.
// Specialization: WORKGROUP_SIZE, IN_C, IN_H, IN_W, OUT_C, OUT_H, OUT_W (both even without POOL), PH, PW,
// OCB, PX, with POOL also POOL_H, POOL_W. `param(i)` reads the transformed weights U [OUT_C, IN_C, 16]
// (ops::winograd::forward_weights), then the bias [OUT_C], then the bounds' factors [2, OUT_C]; with CHECKED
// `direct_param(i)` reads the direct weights [OUT_C, IN_C, 3, 3].

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
//#if POOL
@group(0) @binding(4) var<storage, read_write> argmax: array<u32>;

const GRID_H: u32 = POOL_H;
const GRID_W: u32 = POOL_W;
const STORED: u32 = OUT_C * POOL_H * POOL_W;
//#else
//#if MASK_OUT
@group(0) @binding(4) var<storage, read_write> shares: array<f32>;
//#endif
const GRID_H: u32 = OUT_H / 2u;
const GRID_W: u32 = OUT_W / 2u;
const STORED: u32 = OUT_C * OUT_H * OUT_W;
//#endif

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const BIAS: u32 = OUT_C * IN_C * 16u;
// The bounds' factors: K_u [OUT_C] then K_w [OUT_C].
const BOUND: u32 = BIAS + OUT_C;
const OC_BLOCKS: u32 = (OUT_C + OCB - 1u) / OCB;
const STRIPS: u32 = (GRID_W + PX - 1u) / PX;
const TILES: u32 = OC_BLOCKS * GRID_H * STRIPS;
// Inputs under one row of a strip of blocks.
const SPAN: u32 = 2u * PX + 2u;
const NONE: u32 = 0xffffffffu;

//#if CHANNEL_LOOP
// Every output channel of PX blocks per workgroup: the inputs under the strip are loaded and
// transformed once, then a loop over output channels sums each channel's products over the input
// channels unrolled inside one iteration. On lavapipe a value a loop carries from one iteration to the
// next lives in memory and every write to it is blended with the loop's mask, which made the other
// main's sums, carried across its loop over input channels, about 5 instructions per product; here
// they are registers (BENCHMARKS.md, "Sums that no loop carries"). The sums keep the other main's
// order, so the outputs are the same bit for bit.
const LOOP_TILES: u32 = GRID_H * STRIPS;
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let place = tile_and_block(g, chunk.rows, WORKGROUP_SIZE, LOOP_TILES);
    let first = place.y * WORKGROUP_SIZE;
    if (place.x >= LOOP_TILES || first >= chunk.rows) {
        return;
    }
    let gy = place.x / STRIPS;
    let gx0 = (place.x % STRIPS) * PX;
    let r = first + lane;
    if (r >= chunk.rows) {
        return;
    }
    let x = r * IN_LEN;
    var v: array<array<array<f32, 16>, PX>, IN_C>;
//#if CHECKED
    var seen: Seen;
//#endif
    //#unroll ic IN_C
    {
        var d: array<array<f32, SPAN>, 4>;
        //#unroll ty 4
        {
            let iy = i32(2u * gy + ty) - i32(PH);
            let inside = iy >= 0 && iy < i32(IN_H);
            let line = (ic * IN_H + u32(select(0, iy, inside))) * IN_W;
            //#unroll q 2*PX+2
            {
                let ix = i32(2u * gx0 + q) - i32(PW);
                let at = x + line + u32(clamp(ix, 0, i32(IN_W) - 1));
                d[ty][q] = select(0.0, input[at], inside && ix >= 0 && ix < i32(IN_W));
            }
            //#end
        }
        //#end
//#if CHECKED
        see(&seen, &d);
//#endif
        //#unroll p PX
        v[ic][p] = input_transform(&d, p);
        //#end
    }
    //#end
//#if CHECKED
    var patches: array<Patch, PX>;
    //#unroll p PX
    patches[p] = patch_of(&seen, p);
    //#end
//#endif
    for (var c = 0u; c < OUT_C; c++) {
        var m: array<array<f32, 16>, PX>;
        //#unroll ic IN_C
        //#unroll k 16
        {
            let w = param((c * IN_C + ic) * 16u + k);
            //#unroll p PX
            m[p][k] += w * v[ic][p][k];
            //#end
        }
        //#end
        //#end
        let b = param(BIAS + c);
//#if CHECKED
        // This channel's blocks that the bound cannot vouch for.
        var unsure = 0u;
//#endif
        //#unroll p PX
        if (gx0 + p < GRID_W) {
            var y = output_transform(m[p]);
//#if CHECKED
            unsure |= select(1u << p, 0u, vouched(&y, patches[p], b, c));
//#endif
            pool_window(r, y, b, c, gy, gx0 + p);
        }
        //#end
//#if CHECKED
        // Those again by direct sums. A loop, not a branch: lavapipe runs both sides of a branch
        // under a mask, but leaves a loop once no lane is left in it.
        loop {
            if (unsure == 0u) {
                break;
            }
            let p = firstTrailingBit(unsure);
            unsure &= unsure - 1u;
            pool_window(r, direct_block(x, c, gy, gx0 + p), b, c, gy, gx0 + p);
        }
//#endif
    }
}

//#else
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let place = tile_and_block(g, chunk.rows, WORKGROUP_SIZE, TILES);
    let first = place.y * WORKGROUP_SIZE;
    if (place.x >= TILES || first >= chunk.rows) {
        return;
    }
    let tile = place.x;
    let oc0 = (tile / (GRID_H * STRIPS)) * OCB;
    let gy = (tile / STRIPS) % GRID_H;
    let gx0 = (tile % STRIPS) * PX;
    let r = first + lane;
    // Lanes past the last row leave at once: on a CPU adapter a group of SIMD lanes that all left
    // skips the tile's loops (BENCHMARKS.md).
    if (r >= chunk.rows) {
        return;
    }
    let row = r;
    let x = row * IN_LEN;
//#if SOFT
    let xt = (chunk.rows + row) * IN_LEN;
    var mt: array<array<array<f32, 16>, PX>, OCB>;
//#endif

    // Per output channel and block, the 16 products of the transformed domain, summed over channels.
    var m: array<array<array<f32, 16>, PX>, OCB>;
//#if CHECKED
    var seen: Seen;
//#endif
    for (var ic = 0u; ic < IN_C; ic++) {
        // The 4 x SPAN inputs under the strip; zero outside the input (padding).
        var d: array<array<f32, SPAN>, 4>;
//#if SOFT
        var dt: array<array<f32, SPAN>, 4>;
//#endif
        for (var ty = 0u; ty < 4u; ty++) {
            let iy = i32(2u * gy + ty) - i32(PH);
            let inside = iy >= 0 && iy < i32(IN_H);
            let line = (ic * IN_H + u32(select(0, iy, inside))) * IN_W;
            for (var q = 0u; q < SPAN; q++) {
                let ix = i32(2u * gx0 + q) - i32(PW);
                if (inside && ix >= 0 && ix < i32(IN_W)) {
                    d[ty][q] = input[x + line + u32(ix)];
//#if SOFT
                    dt[ty][q] = input[xt + line + u32(ix)];
//#endif
                }
            }
        }
//#if CHECKED
        see(&seen, &d);
//#endif
        var v: array<array<f32, 16>, PX>;
//#if SOFT
        var vt: array<array<f32, 16>, PX>;
//#endif
        for (var p = 0u; p < PX; p++) {
            v[p] = input_transform(&d, p);
//#if SOFT
            vt[p] = input_transform(&dt, p);
//#endif
        }
        for (var c = 0u; c < OCB; c++) {
            let u = (min(oc0 + c, OUT_C - 1u) * IN_C + ic) * 16u;
            for (var k = 0u; k < 16u; k++) {
                let w = param(u + k);
                for (var p = 0u; p < PX; p++) {
                    m[c][p][k] += w * v[p][k];
//#if SOFT
                    mt[c][p][k] += w * vt[p][k];
//#endif
                }
            }
        }
    }
    if (r >= chunk.rows) {
        return;
    }
//#if CHECKED
    var patches: array<Patch, PX>;
    //#unroll p PX
    patches[p] = patch_of(&seen, p);
    //#end
    // Blocks (c * PX + p) whose decisions the bound cannot vouch for.
    var unsure = vec2<u32>(0u, 0u);
//#endif
    for (var c = 0u; c < OCB; c++) {
        let oc = oc0 + c;
        if (oc >= OUT_C) {
            break;
        }
        // The bias goes last: added first, it would round away the low bits of small products.
        let b = param(BIAS + oc);
        for (var p = 0u; p < PX; p++) {
            let gx = gx0 + p;
            if (gx >= GRID_W) {
                break;
            }
            var y = output_transform(m[c][p]);
//#if CHECKED
            if (!vouched(&y, patches[p], b, oc)) {
                let j = c * PX + p;
                if (j < 32u) {
                    unsure.x |= 1u << j;
                } else {
                    unsure.y |= 1u << (j - 32u);
                }
            }
//#endif
//#if POOL
            pool_window(r, y, b, oc, gy, gx);
//#else
//#if SOFT
            let yt = output_transform(mt[c][p]);
//#endif
            for (var k = 0u; k < 4u; k++) {
                let o = (oc * OUT_H + 2u * gy + k / 2u) * OUT_W + 2u * gx + k % 2u;
                var val = y[k] + b;
//#if SOFT
                var dv = yt[k];
//#if RELU
//#if MASK_OUT
                shares[r * STORED + o] = relu_share(val, dv);
//#endif
                dv = select(0.0, dv, val > 0.0);
//#endif
                output[(chunk.rows + r) * STORED + o] = dv;
//#endif
//#if RELU
                val = max(val, 0.0);
//#endif
                output[r * STORED + o] = val;
            }
//#endif
        }
    }
//#if CHECKED
    // The unvouched blocks again by direct sums. A loop, not a branch: lavapipe runs both sides of a
    // branch under a mask, but leaves a loop once no lane is left in it.
    loop {
        if (all(unsure == vec2<u32>(0u, 0u))) {
            break;
        }
        var j: u32;
        if (unsure.x != 0u) {
            j = firstTrailingBit(unsure.x);
            unsure.x &= unsure.x - 1u;
        } else {
            j = 32u + firstTrailingBit(unsure.y);
            unsure.y &= unsure.y - 1u;
        }
        let oc = oc0 + j / PX;
        let gx = gx0 + j % PX;
        let b = param(BIAS + oc);
        pool_window(r, direct_block(x, oc, gy, gx), b, oc, gy, gx);
    }
//#endif
}

//#endif

//#if POOL
// Row r's max-pool of block (gy, gx) of channel oc, whose conv outputs without the bias are `y`:
// the first maximum in row-major window order, as max-pooling in PyTorch and conv2d_forward.wgsl.
// Selects, not branches: on lavapipe code under a branch runs masked.
fn pool_window(r: u32, y: array<f32, 4>, b: f32, oc: u32, gy: u32, gx: u32) {
    var best = y[0] + b;
//#if RELU
    best = max(best, 0.0);
//#endif
    var k_best = 0u;
    //#unroll k 3
    {
        var val = y[k + 1u] + b;
//#if RELU
        val = max(val, 0.0);
//#endif
        k_best = select(k_best, k + 1u, val > best);
        best = select(best, val, val > best);
    }
    //#end
    var best_at = (oc * OUT_H + 2u * gy + k_best / 2u) * OUT_W + 2u * gx + k_best % 2u;
//#if RELU
    // No gradient passes the ReLU where the window's maximum is not positive.
    best_at = select(NONE, best_at, best > 0.0);
//#endif
    let o = (oc * POOL_H + gy) * POOL_W + gx;
    output[r * STORED + o] = best;
    argmax[r * STORED + o] = best_at;
}
//#endif

//#if CHECKED
// What the rounding bound needs of the inputs under a strip, gathered over the input channels.
struct Seen {
    // |inputs|, summed over channels.
    magnitude: array<array<f32, SPAN>, 4>,
    // Whether an input differs from its right (across) or lower (down) neighbour in some channel.
    across: array<array<bool, SPAN>, 4>,
    down: array<array<bool, SPAN>, 3>,
}

// Adds one input channel's 4 x SPAN inputs to `seen`.
fn see(seen: ptr<function, Seen>, d: ptr<function, array<array<f32, SPAN>, 4>>) {
    //#unroll ty 4
    //#unroll q 2*PX+2
    (*seen).magnitude[ty][q] += abs((*d)[ty][q]);
    //#end
    //#end
    //#unroll ty 4
    //#unroll q 2*PX+1
    (*seen).across[ty][q] = (*seen).across[ty][q] || (*d)[ty][q] != (*d)[ty][q + 1u];
    //#end
    //#end
    //#unroll ty 3
    //#unroll q 2*PX+2
    (*seen).down[ty][q] = (*seen).down[ty][q] || (*d)[ty][q] != (*d)[ty + 1u][q];
    //#end
    //#end
}

// Per block, for its outputs in row-major order, the parts of the rounding bound that scale with the
// inputs (ops::winograd::forward_bounds), and which outputs share a window.
struct Patch {
    // The patch's magnitudes weighted by how often the output's Winograd sum uses them (rows and
    // columns 1, 2, 3, 0 for the first output row or column, 0, 3, 2, 1 for the second).
    spread: vec4<f32>,
    // The magnitudes under the output's window.
    window: vec4<f32>,
    // Whether the output has the same window as an earlier one (0 and 1, 2 and 3, 0 and 2, 1 and 3):
    // the direct kernel's sums over equal windows are equal, and the first one wins the pool.
    same: vec4<bool>,
}

// Block p's patch.
fn patch_of(seen: ptr<function, Seen>, p: u32) -> Patch {
    var used: array<vec2<f32>, 4>;
    var under: array<vec2<f32>, 4>;
    //#unroll ty 4
    {
        let a = (*seen).magnitude[ty][2u * p];
        let b = (*seen).magnitude[ty][2u * p + 1u];
        let c = (*seen).magnitude[ty][2u * p + 2u];
        let d = (*seen).magnitude[ty][2u * p + 3u];
        used[ty] = vec2<f32>(a + 2.0 * b + 3.0 * c, 3.0 * b + 2.0 * c + d);
        under[ty] = vec2<f32>(a + b + c, b + c + d);
    }
    //#end
    let top = used[0] + 2.0 * used[1] + 3.0 * used[2];
    let bottom = 3.0 * used[1] + 2.0 * used[2] + used[3];
    var out: Patch;
    out.spread = vec4<f32>(top, bottom);
    out.window = vec4<f32>(under[0] + under[1] + under[2], under[1] + under[2] + under[3]);
    var equal = vec4<bool>(true);
    //#unroll t 3
    {
        // Outputs 0 and 1 (rows 0-2), 2 and 3 (rows 1-3): columns 0-2 equal columns 1-3.
        let q = 2u * p + t;
        let rows12 = !(*seen).across[1][q] && !(*seen).across[2][q];
        equal.x = equal.x && rows12 && !(*seen).across[0][q];
        equal.y = equal.y && rows12 && !(*seen).across[3][q];
        // Outputs 0 and 2 (columns 0-2), 1 and 3 (columns 1-3): rows 0-2 equal rows 1-3, here
        // row t and the one below it.
        let c = 2u * p;
        let cols12 = !(*seen).down[t][c + 1u] && !(*seen).down[t][c + 2u];
        equal.z = equal.z && cols12 && !(*seen).down[t][c];
        equal.w = equal.w && cols12 && !(*seen).down[t][c + 3u];
    }
    //#end
    out.same = equal;
    return out;
}

// Makes the block's Winograd outputs `y` (without the bias `b`) of channel oc equal where their
// windows are, and tells whether every set of values within the rounding bound (ops::winograd::
// forward_bounds) of them leads to the decision they lead to. Selects, not branches, and no indexing
// by values (on lavapipe that is a gather).
fn vouched(y: ptr<function, array<f32, 4>>, block: Patch, b: f32, oc: u32) -> bool {
    let equal = block.same;
    (*y)[1] = select((*y)[1], (*y)[0], equal.x);
    (*y)[2] = select((*y)[2], (*y)[0], equal.z);
    (*y)[3] = select(select((*y)[3], (*y)[2], equal.y), (*y)[1], equal.w);
    // Outputs with an earlier output's window.
    let copies = vec4<bool>(false, equal.x, equal.z, equal.y || equal.w);
    let e = param(BOUND + oc) * block.spread + param(BOUND + OUT_C + oc) * block.window;
    let v = vec4<f32>((*y)[0], (*y)[1], (*y)[2], (*y)[3]) + b;
    let bound = e + 1.7881393e-7 * abs(v);
    let lo = v - bound;
    let hi = v + bound;
    // The winner, which must stay ahead of every other window.
    var top = 0u;
    var top_v = v.x;
    var top_lo = lo.x;
    //#unroll j 3
    {
        let better = !copies[j + 1u] && v[j + 1u] > top_v;
        top = select(top, j + 1u, better);
        top_v = select(top_v, v[j + 1u], better);
        top_lo = select(top_lo, lo[j + 1u], better);
    }
    //#end
    var ahead = true;
    //#unroll k 4
    ahead = ahead && (k == top || copies[k] || top_lo > hi[k]);
    //#end
//#if RELU
    // All surely not positive (no winner passes the ReLU), or a sure positive winner.
    return all(hi <= vec4<f32>(0.0)) || (ahead && top_lo > 0.0);
//#else
    return ahead;
//#endif
}

// Conv outputs (without the bias) of block (by, bx) of channel oc of the row at `x`, summed as
// conv2d_forward.wgsl sums them: the taps of each input channel, then the channels.
fn direct_block(x: u32, oc: u32, by: u32, bx: u32) -> array<f32, 4> {
    var acc: array<f32, 4>;
    for (var ic = 0u; ic < IN_C; ic++) {
        var d: array<array<f32, 4>, 4>;
        for (var ty = 0u; ty < 4u; ty++) {
            let iy = i32(2u * by + ty) - i32(PH);
            for (var tx = 0u; tx < 4u; tx++) {
                let ix = i32(2u * bx + tx) - i32(PW);
                if (iy >= 0 && iy < i32(IN_H) && ix >= 0 && ix < i32(IN_W)) {
                    d[ty][tx] = input[x + (ic * IN_H + u32(iy)) * IN_W + u32(ix)];
                }
            }
        }
        var part: array<f32, 4>;
        for (var ky = 0u; ky < 3u; ky++) {
            for (var kx = 0u; kx < 3u; kx++) {
                let wv = direct_param(((oc * IN_C + ic) * 3u + ky) * 3u + kx);
                for (var k = 0u; k < 4u; k++) {
                    part[k] += wv * d[k / 2u + ky][k % 2u + kx];
                }
            }
        }
        for (var k = 0u; k < 4u; k++) {
            acc[k] += part[k];
        }
    }
    return acc;
}
//#endif
