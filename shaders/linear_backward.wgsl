// Linear input gradient: one invocation per input feature of every gradient row.

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
    let k = i % layer.in_len;
    let g = r * layer.out_len;
    var acc = 0.0;
    for (var o = 0u; o < layer.out_len; o++) {
        acc += weight[o * layer.in_len + k] * grad_out[g + o];
    }
    grad_in[i] = acc;
}
