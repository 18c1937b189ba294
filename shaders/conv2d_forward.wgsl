// Conv2d forward: one invocation per output value of every row. Weights OIHW, zero padding.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(1) var<uniform> layer: Layer;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> output: array<f32>;

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
    let oc = o / plane;
    let oy = (o % plane) / layer.out_w;
    let ox = o % layer.out_w;
    let base = r * layer.in_len;
    // Two-level sum (per input channel, then over channels): its rounding error grows with
    // kernel_h * kernel_w + in_c rather than with their product.
    var acc = 0.0;
    for (var ic = 0u; ic < layer.in_c; ic++) {
        var part = 0.0;
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
                let w = weight[((oc * layer.in_c + ic) * layer.kernel_h + ky) * layer.kernel_w + kx];
                part += w * input[base + (ic * layer.in_h + u32(iy)) * layer.in_w + u32(ix)];
            }
        }
        acc += part;
    }
    // The bias goes last: added first, it would round away the low bits of every small product
    // (this matters near a zero baseline, where all products are small).
    output[i] = acc + bias[oc];
}
