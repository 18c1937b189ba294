// Linear forward, with the bias and optionally the ReLU that follows it (flag RELU). With SOFT the tangent
// rows are carried too (without the bias) and the ReLU stores each output's open share (MASK_OUT).
// Lanes are rows, each lane RB rows (WORKGROUP_SIZE apart); a workgroup computes OB outputs. Each weight,
// read at a uniform address, serves RB products per lane.
// Specialization: WORKGROUP_SIZE, IN_LEN, OUT_LEN, OB, RB; `param(i)` reads the weights [OUT_LEN, IN_LEN],
// then the bias [OUT_LEN]. With VEC4 the weights are read by `window4(w, v)` instead, from WINDOWS windows
// of KW inputs each (src/gpu/windows.rs: uniform bindings where one cannot hold them all, else one
// window, `param4`), so the loop over inputs runs once per window, each copy reading its own.

@group(0) @binding(0) var<uniform> chunk: Chunk;
//#if VEC4
// IN_LEN is a multiple of 4: inputs and weights are read 4 at a time (on lavapipe every storage read is
// a gather, and a vec4 gather costs little more than a scalar one).
@group(0) @binding(2) var<storage, read> input: array<vec4<f32>>;
//#else
@group(0) @binding(2) var<storage, read> input: array<f32>;
//#endif
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
//#if MASK_OUT
@group(0) @binding(4) var<storage, read_write> shares: array<f32>;
//#endif

const TILES: u32 = (OUT_LEN + OB - 1u) / OB;
const BIAS: u32 = OUT_LEN * IN_LEN;
// Products are summed in blocks of BLOCK, then the blocks, to keep the rounding error small.
const BLOCK: u32 = 32u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let g = workgroup_index(wg, groups);
    let place = tile_and_block(g, chunk.rows, WORKGROUP_SIZE * RB, TILES);
    let first = place.y * WORKGROUP_SIZE * RB;
    if (place.x >= TILES || first >= chunk.rows) {
        return;
    }
    let o0 = place.x * OB;
    var x: array<u32, RB>;
    for (var k = 0u; k < RB; k++) {
        let r = first + k * WORKGROUP_SIZE + lane;
        x[k] = select(first, r, r < chunk.rows) * IN_LEN;
    }
    var acc: array<array<f32, RB>, OB>;
//#if SOFT
    var tacc: array<array<f32, RB>, OB>;
//#endif
    //#unroll wi WINDOWS
    for (var i0 = wi * KW; i0 < min(wi * KW + KW, IN_LEN); i0 += BLOCK) {
        var part: array<array<f32, RB>, OB>;
//#if SOFT
        var tpart: array<array<f32, RB>, OB>;
//#endif
//#if VEC4
        for (var i = i0; i < min(i0 + BLOCK, IN_LEN); i += 4u) {
            var xs: array<vec4<f32>, RB>;
//#if SOFT
            var ts: array<vec4<f32>, RB>;
//#endif
            for (var k = 0u; k < RB; k++) {
                xs[k] = input[(x[k] + i) / 4u];
//#if SOFT
                ts[k] = input[(chunk.rows * IN_LEN + x[k] + i) / 4u];
//#endif
            }
            for (var o = 0u; o < OB; o++) {
                let w = window4(wi, (min(o0 + o, OUT_LEN - 1u) * KW + i - wi * KW) / 4u);
                for (var k = 0u; k < RB; k++) {
                    // In the order of the scalar loop: the same sums.
                    for (var q = 0u; q < 4u; q++) {
                        part[o][k] += w[q] * xs[k][q];
//#if SOFT
                        tpart[o][k] += w[q] * ts[k][q];
//#endif
                    }
                }
            }
        }
//#else
        for (var i = i0; i < min(i0 + BLOCK, IN_LEN); i++) {
            var xs: array<f32, RB>;
//#if SOFT
            var ts: array<f32, RB>;
//#endif
            for (var k = 0u; k < RB; k++) {
                xs[k] = input[x[k] + i];
//#if SOFT
                ts[k] = input[chunk.rows * IN_LEN + x[k] + i];
//#endif
            }
            for (var o = 0u; o < OB; o++) {
                let w = param(min(o0 + o, OUT_LEN - 1u) * IN_LEN + i);
                for (var k = 0u; k < RB; k++) {
                    part[o][k] += w * xs[k];
//#if SOFT
                    tpart[o][k] += w * ts[k];
//#endif
                }
            }
        }
//#endif
        for (var o = 0u; o < OB; o++) {
            for (var k = 0u; k < RB; k++) {
                acc[o][k] += part[o][k];
//#if SOFT
                tacc[o][k] += tpart[o][k];
//#endif
            }
        }
    }
    //#end
    for (var k = 0u; k < RB; k++) {
        let r = first + k * WORKGROUP_SIZE + lane;
        if (r >= chunk.rows) {
            break;
        }
        for (var o = 0u; o < OB; o++) {
            if (o0 + o >= OUT_LEN) {
                break;
            }
            // The bias goes last, as in conv2d_forward.wgsl.
            var v = acc[o][k] + param(BIAS + o0 + o);
//#if SOFT
            var d = tacc[o][k];
//#if RELU
//#if MASK_OUT
            shares[r * OUT_LEN + o0 + o] = relu_share(v, d);
//#endif
            d = select(0.0, d, v > 0.0);
//#endif
            output[(chunk.rows + r) * OUT_LEN + o0 + o] = d;
//#endif
//#if RELU
            v = max(v, 0.0);
//#endif
            output[r * OUT_LEN + o0 + o] = v;
        }
    }
}
