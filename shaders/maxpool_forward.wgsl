// MaxPool2d forward: the maximum of each window (padding counts as -inf) and where it was, for the
// backward pass. Ties go to the first maximum in row-major window order, as in PyTorch. With RELU_INPUT
// the pool applies the ReLU before it (its input is the ReLU's input): the values are max(v, 0), and a
// window whose maximum is not positive records no position, since the ReLU passes no gradient there.
// With SOFT the pool also carries the tangent rows and records, instead of a position, each element's
// share of the cell as the maximum (`window_shares`); the tangent is the maximum's mean slope over the
// cell, each element's slope by its share (with RELU_INPUT the zero line's share adds nothing).
// (A first max-pool over a first conv folded along the path is maxpool_path.wgsl.)
// Lanes are rows; a workgroup covers PX outputs of one output row of one channel.
// Specialization: WORKGROUP_SIZE, IN_C, IN_H, IN_W, OUT_C, OUT_H, OUT_W, KH, KW, SH, SW, PH, PW, PX, WIN.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
//#if SOFT
// WIN shares per output, in row-major window order.
@group(0) @binding(4) var<storage, read_write> argmax: array<f32>;
//#else
@group(0) @binding(4) var<storage, read_write> argmax: array<u32>;
//#endif

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = OUT_C * OUT_H * OUT_W;
const STRIPS: u32 = (OUT_W + PX - 1u) / PX;
const TILES: u32 = OUT_C * OUT_H * STRIPS;
const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let place = tile_and_block(g, chunk.rows, WORKGROUP_SIZE, TILES);
    let r = place.y * WORKGROUP_SIZE + lane;
    if (place.x >= TILES || r >= chunk.rows) {
        return;
    }
    let tile = place.x;
    let c = tile / (OUT_H * STRIPS);
    let oy = (tile / STRIPS) % OUT_H;
    let ox0 = (tile % STRIPS) * PX;
    let x = r * IN_LEN;
    for (var p = 0u; p < PX; p++) {
        let ox = ox0 + p;
        if (ox >= OUT_W) {
            break;
        }
        var best = 0.0;
        var best_at = NONE;
//#if SOFT
        // The window's lines, in window order; padded positions take no part.
        var lines: array<f32, WIN>;
        var slopes: array<f32, WIN>;
        var valid: array<bool, WIN>;
//#endif
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * SH + ky) - i32(PH);
            if (iy < 0 || iy >= i32(IN_H)) {
                continue;
            }
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(ox * SW + kx) - i32(PW);
                if (ix < 0 || ix >= i32(IN_W)) {
                    continue;
                }
                let at = (c * IN_H + u32(iy)) * IN_W + u32(ix);
                var v = input[x + at];
//#if SOFT
                let d = input[(chunk.rows + r) * IN_LEN + at];
//#endif
//#if SOFT
                lines[ky * KW + kx] = v;
                slopes[ky * KW + kx] = d;
                valid[ky * KW + kx] = true;
//#endif
//#if RELU_INPUT
                v = max(v, 0.0);
//#endif
                if (best_at == NONE || v > best) {
                    best = v;
                    best_at = at;
                }
            }
        }
//#if RELU_INPUT
        best_at = select(NONE, best_at, best > 0.0);
//#endif
        let o = r * OUT_LEN + (c * OUT_H + oy) * OUT_W + ox;
        output[o] = best;
//#if SOFT
//#if RELU_INPUT
        let share = window_shares(lines, slopes, valid, true);
//#else
        let share = window_shares(lines, slopes, valid, false);
//#endif
        output[(chunk.rows + r) * OUT_LEN + (c * OUT_H + oy) * OUT_W + ox] = mean_slope(share, slopes);
        for (var k = 0u; k < WIN; k++) {
            argmax[o * WIN + k] = share[k];
        }
//#else
        argmax[o] = best_at;
//#endif
    }
}
