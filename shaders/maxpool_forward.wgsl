// MaxPool2d forward: the maximum of each window (padding counts as -inf) and where it was, for the
// backward pass. Ties go to the first maximum in row-major window order, as in PyTorch. With RELU_INPUT
// (the input is a ReLU's output) a window whose maximum is not positive records no position: the ReLU
// passes no gradient there, so the backward pass needs no separate mask.
// Lanes are rows; a workgroup covers PX outputs of one output row of one channel.
// Specialization: WORKGROUP_SIZE, IN_C, IN_H, IN_W, OUT_C, OUT_H, OUT_W, KH, KW, SH, SW, PH, PW, PX.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read_write> argmax: array<u32>;

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = OUT_C * OUT_H * OUT_W;
const STRIPS: u32 = (OUT_W + PX - 1u) / PX;
const TILES: u32 = OUT_C * OUT_H * STRIPS;
const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let r = (g / TILES) * WORKGROUP_SIZE + lane;
    if (r >= chunk.rows) {
        return;
    }
    let tile = g % TILES;
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
                let v = input[x + at];
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
        argmax[o] = best_at;
    }
}
