// MaxPool2d input gradient: each input value gathers the gradients of the windows whose maximum it was.

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(1) var<uniform> layer: Layer;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read> argmax: array<u32>;
@group(0) @binding(4) var<storage, read_write> grad_in: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let i = invocation_index(wg, groups, local);
    if (i >= chunk.grad_rows * layer.in_len) {
        return;
    }
    let r = i / layer.in_len;
    let j = i % layer.in_len;
    let plane = layer.in_h * layer.in_w;
    let c = j / plane;
    let iy = (j % plane) / layer.in_w;
    let ix = j % layer.in_w;
    let ys = covering(iy, layer.kernel_h, layer.stride_h, layer.pad_h, layer.out_h);
    let xs = covering(ix, layer.kernel_w, layer.stride_w, layer.pad_w, layer.out_w);
    let base = r * layer.out_len + c * layer.out_h * layer.out_w;
    var acc = 0.0;
    for (var oy = ys.x; oy <= ys.y; oy++) {
        for (var ox = xs.x; ox <= xs.y; ox++) {
            let o = base + u32(oy) * layer.out_w + u32(ox);
            if (argmax[o] == j) {
                acc += grad_out[o];
            }
        }
    }
    grad_in[i] = acc;
}
