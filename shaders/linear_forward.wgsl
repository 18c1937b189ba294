// Linear forward: one invocation per output feature of every row. Weights [out, in].

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
    let x = r * layer.in_len;
    let w = o * layer.in_len;
    var acc = 0.0;
    for (var k = 0u; k < layer.in_len; k++) {
        acc += weight[w + k] * input[x + k];
    }
    // The bias goes last: added first, it would round away the low bits of every small product
    // (this matters near a zero baseline, where all products are small).
    output[i] = acc + bias[o];
}
