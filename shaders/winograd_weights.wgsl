// Training: a 3x3 conv's weights in Winograd's domain (src/ops/winograd.rs, the f64 twin), made again
// after every optimizer step so that the Winograd kernels of the next step read the new weights. One
// invocation per filter (o, i): G w G^T into the forward layout U[o][i][16] (flag FORWARD; the first
// OUT_C invocations also copy the bias after it), and of the filter turned by 180 degrees into the
// backward layout U'[i][o][16] (flag BACKWARD).
// Specialization: WORKGROUP_SIZE, IN_C, OUT_C. `params` holds the weights [OUT_C, IN_C, 3, 3], then the
// bias (zeros without one).

@group(0) @binding(1) var<storage, read> params: array<f32>;
//#if FORWARD
@group(0) @binding(2) var<storage, read_write> forward: array<f32>;
//#endif
//#if BACKWARD
@group(0) @binding(3) var<storage, read_write> backward: array<f32>;
//#endif

const BIAS: u32 = OUT_C * IN_C * 9u;
// Where the bias goes in the forward layout.
const U_BIAS: u32 = OUT_C * IN_C * 16u;

// G w G^T of a row-major 3x3 filter, row-major 4x4 (G's rows: (1, 0, 0), (1, 1, 1) / 2, (1, -1, 1) / 2,
// (0, 0, 1)).
fn transform(w: array<f32, 9>) -> array<f32, 16> {
    var gw: array<array<f32, 3>, 4>;
    for (var c = 0u; c < 3u; c++) {
        gw[0][c] = w[c];
        gw[1][c] = 0.5 * (w[c] + w[3u + c] + w[6u + c]);
        gw[2][c] = 0.5 * (w[c] - w[3u + c] + w[6u + c]);
        gw[3][c] = w[6u + c];
    }
    var u: array<f32, 16>;
    for (var r = 0u; r < 4u; r++) {
        u[r * 4u] = gw[r][0];
        u[r * 4u + 1u] = 0.5 * (gw[r][0] + gw[r][1] + gw[r][2]);
        u[r * 4u + 2u] = 0.5 * (gw[r][0] - gw[r][1] + gw[r][2]);
        u[r * 4u + 3u] = gw[r][2];
    }
    return u;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let f = invocation_index(wg, groups, local);
    if (f >= OUT_C * IN_C) {
        return;
    }
    let o = f / IN_C;
    let i = f % IN_C;
    var w: array<f32, 9>;
    for (var k = 0u; k < 9u; k++) {
        w[k] = params[f * 9u + k];
    }
//#if FORWARD
    let u = transform(w);
    for (var k = 0u; k < 16u; k++) {
        forward[f * 16u + k] = u[k];
    }
    if (f < OUT_C) {
        forward[U_BIAS + f] = params[BIAS + f];
    }
//#endif
//#if BACKWARD
    var turned: array<f32, 9>;
    for (var k = 0u; k < 9u; k++) {
        turned[k] = w[8u - k];
    }
    let t = transform(turned);
    for (var k = 0u; k < 16u; k++) {
        backward[(i * OUT_C + o) * 16u + k] = t[k];
    }
//#endif
}
