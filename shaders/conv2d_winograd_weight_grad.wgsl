// Conv2d 3x3 stride-1 weight and bias gradients by Winograd's F(3x3, 2x2) (src/ops/winograd.rs), first
// pass: each row's contribution, as conv2d_weight_grad.wgsl writes it (row r's share at r * P_LEN, in the
// layout of the weights then bias; weight_reduce.wgsl sums the rows in order). A 2x2 block g of output
// gradients and the 4x4 patch d of inputs under it add A^T [(G g G^T) . (B^T d B)] A to the 3x3 weight
// gradient: 16 multiplications per channel pair instead of 36. The products are summed over the blocks
// in the transformed domain and transformed back once per row.
// B^T is the forward kernel's (common.wgsl's input_transform), whose last row is the negative of
// the usual F(3, 2) one; G's last row is negated to match (ops::winograd::weight_gradient).
// Lanes are rows; a workgroup computes OCB output channels times ICB input channels for WORKGROUP_SIZE
// rows. With POOLED a 2x2 stride-2 max-pool follows the conv (and its ReLU), whose windows are the
// blocks: grad_out is the pool's output gradient, and a conv output's gradient is its window's where it
// was the window's maximum.
// Specialization: WORKGROUP_SIZE, IN_C, IN_H, IN_W, OUT_C, OUT_H, OUT_W (even without POOLED), PH, PW,
// OCB, ICB; with POOLED, POOL_H, POOL_W.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;
//#if POOLED
// Where each pool window's maximum was.
@group(0) @binding(5) var<storage, read> argmax: array<u32>;
const POOL_LEN: u32 = OUT_C * POOL_H * POOL_W;
const GRID_H: u32 = POOL_H;
const GRID_W: u32 = POOL_W;
//#else
const GRID_H: u32 = OUT_H / 2u;
const GRID_W: u32 = OUT_W / 2u;
//#endif

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = OUT_C * OUT_H * OUT_W;
const BIAS: u32 = OUT_C * IN_C * 9u;
const P_LEN: u32 = BIAS + OUT_C;
const IC_BLOCKS: u32 = (IN_C + ICB - 1u) / ICB;
const TILES: u32 = ((OUT_C + OCB - 1u) / OCB) * IC_BLOCKS;
// One block's patch (input_transform's strip of one block).
const SPAN: u32 = 4u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let place = tile_and_block(g, chunk.grad_rows, WORKGROUP_SIZE, TILES);
    let r = place.y * WORKGROUP_SIZE + lane;
    if (place.x >= TILES || r >= chunk.grad_rows) {
        return;
    }
    let tile = place.x;
    let oc0 = (tile / IC_BLOCKS) * OCB;
    let ic0 = (tile % IC_BLOCKS) * ICB;
    let x = r * IN_LEN;
    // Per channel pair, the 16 products of the transformed domain, summed over the blocks.
    var m: array<array<array<f32, 16>, ICB>, OCB>;
    var db: array<f32, OCB>;
    for (var by = 0u; by < GRID_H; by++) {
        for (var bx = 0u; bx < GRID_W; bx++) {
            // The blocks' output gradients, transformed.
            var gt: array<array<f32, 16>, OCB>;
            for (var c = 0u; c < OCB; c++) {
                let oc = min(oc0 + c, OUT_C - 1u);
                var block: array<f32, 4>;
//#if POOLED
                let o = r * POOL_LEN + (oc * POOL_H + by) * POOL_W + bx;
                let at = argmax[o];
                let gv = grad_out[o];
                let corner = (oc * OUT_H + 2u * by) * OUT_W + 2u * bx;
                for (var k = 0u; k < 4u; k++) {
                    block[k] = select(0.0, gv, at == corner + (k / 2u) * OUT_W + k % 2u);
                }
//#else
                for (var k = 0u; k < 4u; k++) {
                    block[k] = grad_out[r * OUT_LEN + (oc * OUT_H + 2u * by + k / 2u) * OUT_W
                        + 2u * bx + k % 2u];
                }
//#endif
                db[c] += (block[0] + block[1]) + (block[2] + block[3]);
                gt[c] = gradient_transform(block);
            }
            for (var i = 0u; i < ICB; i++) {
                let ic = min(ic0 + i, IN_C - 1u);
                // The 4x4 inputs under the block; zero outside the input (padding).
                var d: array<array<f32, SPAN>, 4>;
                for (var ty = 0u; ty < 4u; ty++) {
                    let iy = i32(2u * by + ty) - i32(PH);
                    let inside = iy >= 0 && iy < i32(IN_H);
                    let line = x + (ic * IN_H + u32(select(0, iy, inside))) * IN_W;
                    for (var tx = 0u; tx < 4u; tx++) {
                        let ix = i32(2u * bx + tx) - i32(PW);
                        if (inside && ix >= 0 && ix < i32(IN_W)) {
                            d[ty][tx] = input[line + u32(ix)];
                        }
                    }
                }
                let v = input_transform(&d, 0u);
                for (var c = 0u; c < OCB; c++) {
                    for (var k = 0u; k < 16u; k++) {
                        m[c][i][k] += gt[c][k] * v[k];
                    }
                }
            }
        }
    }
    let out = r * P_LEN;
    for (var c = 0u; c < OCB; c++) {
        let oc = oc0 + c;
        if (oc >= OUT_C) {
            break;
        }
        for (var i = 0u; i < ICB; i++) {
            let ic = ic0 + i;
            if (ic >= IN_C) {
                break;
            }
            let w = weight_transform_back(m[c][i]);
            for (var k = 0u; k < 9u; k++) {
                partial[out + (oc * IN_C + ic) * 9u + k] = w[k];
            }
        }
        if (ic0 == 0u) {
            partial[out + BIAS + oc] = db[c];
        }
    }
}

// G g G^T of a row-major 2x2 block of output gradients, with G's rows (1, 0), (1, 1) / 2,
// (1, -1) / 2, (0, -1): row-major 4x4.
fn gradient_transform(g: array<f32, 4>) -> array<f32, 16> {
    // G g: 4 rows of 2.
    let rows = array<vec2<f32>, 4>(
        vec2<f32>(g[0], g[1]),
        0.5 * vec2<f32>(g[0] + g[2], g[1] + g[3]),
        0.5 * vec2<f32>(g[0] - g[2], g[1] - g[3]),
        -vec2<f32>(g[2], g[3]),
    );
    var t: array<f32, 16>;
    for (var k = 0u; k < 4u; k++) {
        let e = rows[k];
        t[k * 4u] = e.x;
        t[k * 4u + 1u] = 0.5 * (e.x + e.y);
        t[k * 4u + 2u] = 0.5 * (e.x - e.y);
        t[k * 4u + 3u] = -e.y;
    }
    return t;
}

// A^T m A with A^T's rows (1, 1, 1, 0), (0, 1, -1, 0), (0, 1, 1, 1): the 3x3 weight gradient,
// row-major.
fn weight_transform_back(m: array<f32, 16>) -> array<f32, 9> {
    var s: array<vec4<f32>, 3>;
    for (var j = 0u; j < 4u; j++) {
        s[0][j] = m[j] + m[4u + j] + m[8u + j];
        s[1][j] = m[4u + j] - m[8u + j];
        s[2][j] = m[4u + j] + m[8u + j] + m[12u + j];
    }
    var w: array<f32, 9>;
    for (var k = 0u; k < 3u; k++) {
        w[k * 3u] = s[k].x + s[k].y + s[k].z;
        w[k * 3u + 1u] = s[k].y - s[k].z;
        w[k * 3u + 2u] = s[k].y + s[k].z + s[k].w;
    }
    return w;
}
