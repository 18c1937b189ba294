// MaxPool2d forward: the maximum of each window (padding counts as -inf) and where it was, for the
// backward pass. Ties go to the first maximum in row-major window order, as in PyTorch.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(1) var<uniform> layer: Layer;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read_write> argmax: array<u32>;

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
    var best = 0.0;
    var best_at = 0xffffffffu;
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
            let at = (c * layer.in_h + u32(iy)) * layer.in_w + u32(ix);
            let v = input[base + at];
            if (best_at == 0xffffffffu || v > best) {
                best = v;
                best_at = at;
            }
        }
    }
    output[i] = best;
    argmax[i] = best_at;
}
