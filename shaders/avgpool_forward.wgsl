// AvgPool2d forward; padded positions count as zeros in the divisor (count_include_pad, PyTorch's default).

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(1) var<uniform> layer: Layer;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.rows * layer.out_len) {
        return;
    }
    let r = i / layer.out_len;
    let o = i % layer.out_len;
    let plane = layer.out_h * layer.out_w;
    let c = o / plane;
    let oy = (o % plane) / layer.out_w;
    let ox = o % layer.out_w;
    let base = r * layer.in_len;
    let scale = 1.0 / f32(layer.kernel_h * layer.kernel_w);
    var acc = 0.0;
    for (var ky = 0u; ky < layer.kernel_h; ky++) {
        let iy = i32(oy * layer.stride_h + ky) - i32(layer.pad_h);
        if (iy < 0 || iy >= i32(layer.in_h)) {
            continue;
        }
        for (var kx = 0u; kx < layer.kernel_w; kx++) {
            let ix = i32(ox * layer.stride_w + kx) - i32(layer.pad_w);
            if (ix < 0 || ix >= i32(layer.in_w)) {
                continue;
            }
            acc += input[base + (c * layer.in_h + u32(iy)) * layer.in_w + u32(ix)] * scale;
        }
    }
    output[i] = acc;
}
