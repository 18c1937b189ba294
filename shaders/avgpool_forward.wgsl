// AvgPool2d forward; padded positions count as zeros in the divisor (count_include_pad, PyTorch's default).
// With SOFT the tangent rows are pooled the same way.
// Lanes are rows; a workgroup covers PX outputs of one output row of one channel.
// Specialization: WORKGROUP_SIZE, IN_C, IN_H, IN_W, OUT_C, OUT_H, OUT_W, KH, KW, SH, SW, PH, PW, PX.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

const IN_LEN: u32 = IN_C * IN_H * IN_W;
const OUT_LEN: u32 = OUT_C * OUT_H * OUT_W;
const STRIPS: u32 = (OUT_W + PX - 1u) / PX;
const TILES: u32 = OUT_C * OUT_H * STRIPS;
const SCALE: f32 = 1.0 / f32(KH * KW);

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
//#if SOFT
    // The values, then the tangents.
    for (var part = 0u; part < 2u; part++) {
        let row = r + part * chunk.rows;
//#else
    {
        let row = r;
//#endif
        for (var p = 0u; p < PX; p++) {
            let ox = ox0 + p;
            if (ox >= OUT_W) {
                break;
            }
            var acc = 0.0;
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
                    acc += input[row * IN_LEN + (c * IN_H + u32(iy)) * IN_W + u32(ix)] * SCALE;
                }
            }
            output[row * OUT_LEN + (c * OUT_H + oy) * OUT_W + ox] = acc;
        }
    }
}
