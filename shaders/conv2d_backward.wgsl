// Conv2d input gradient: one invocation per input value of every gradient row, gathering from the
// output gradients whose windows cover it (no atomics).

@group(0) @binding(0) var<uniform> chunk: Chunk;
@group(0) @binding(1) var<uniform> layer: Layer;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
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
    let ic = j / plane;
    let iy = (j % plane) / layer.in_w;
    let ix = j % layer.in_w;
    let base = r * layer.out_len;
    // Two-level sum, as in the forward pass.
    var acc = 0.0;
    for (var oc = 0u; oc < layer.out_c; oc++) {
        var part = 0.0;
        for (var ky = 0u; ky < layer.kernel_h; ky++) {
            // Output row oy reads input row iy through tap ky when oy * stride + ky - pad == iy.
            let ty = i32(iy + layer.pad_h) - i32(ky);
            if (ty < 0 || u32(ty) % layer.stride_h != 0u) {
                continue;
            }
            let oy = u32(ty) / layer.stride_h;
            if (oy >= layer.out_h) {
                continue;
            }
            for (var kx = 0u; kx < layer.kernel_w; kx++) {
                let tx = i32(ix + layer.pad_w) - i32(kx);
                if (tx < 0 || u32(tx) % layer.stride_w != 0u) {
                    continue;
                }
                let ox = u32(tx) / layer.stride_w;
                if (ox >= layer.out_w) {
                    continue;
                }
                let w = weight[((oc * layer.in_c + ic) * layer.kernel_h + ky) * layer.kernel_w + kx];
                part += w * grad_out[base + (oc * layer.out_h + oy) * layer.out_w + ox];
            }
        }
        acc += part;
    }
    grad_in[i] = acc;
}
