//! Winograd's minimal filtering F(2x2, 3x3) for 3x3 stride-1 convolutions: CPU twin of
//! shaders/conv2d_winograd_forward.wgsl and shaders/conv2d_winograd_backward.wgsl.
//!
//! A 2x2 block of outputs of one channel pair is `A^T [(G w G^T) . (B^T d B)] A`, where `d` is the 4x4
//! patch of inputs under it and `.` the element-wise product: 16 multiplications instead of 36. The
//! weight transform `G w G^T` is done once, on the host (here, in f64), and in training again on the
//! GPU after every step (shaders/winograd_weights.wgsl); the kernels transform the patches, multiply
//! and transform back. The 2x2 output blocks of a conv followed by a 2x2 max-pool are
//! exactly the pool's windows, so the pool runs in the same epilogue.
//!
//! The input gradient of a 3x3 stride-1 conv is itself a 3x3 stride-1 correlation of the output
//! gradient with the flipped, transposed weights, so it uses the same transforms ([`backward_weights`]).
//!
//! The weight gradient of a 3x3 stride-1 conv sums, over 2x2 blocks of output gradients g, the 3x3
//! correlation of the 4x4 input patch with g: Winograd's F(3x3, 2x2), `A^T [(G g G^T) . (B^T d B)] A`
//! with the same B and other A and G ([`weight_gradient`], shaders/conv2d_winograd_weight_grad.wgsl).
//!
//! These functions let the tests check the transforms themselves in f64 (against ops::conv2d) before
//! any kernel is involved.

use crate::model::Conv2d;

/// Values per transformed 3x3 filter (4x4).
pub const TILE: usize = 16;

/// G (4x3): the weight transform.
const G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// Whether a conv is computed by F(2x2, 3x3): 3x3 taps, stride 1, and outputs (forward) or inputs
/// (backward) tiled by whole 2x2 blocks are up to the caller.
pub fn applies(c: &Conv2d) -> bool {
    c.kernel == [3, 3] && c.stride == [1, 1]
}

/// `G w G^T` of one 3x3 filter, row-major 4x4.
fn transform(w: &[f64]) -> [f64; TILE] {
    let mut gw = [[0.0; 3]; 4];
    for (r, row) in gw.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| G[r][k] * w[k * 3 + c]).sum();
        }
    }
    let mut u = [0.0; TILE];
    for r in 0..4 {
        for c in 0..4 {
            u[r * 4 + c] = (0..3).map(|k| gw[r][k] * G[c][k]).sum();
        }
    }
    u
}

/// Forward weights as the forward kernel reads them: U[o][i][16] for OIHW `weight`, then the bias
/// (zeros without one).
pub fn forward_weights(weight: &[f64], bias: &[f64], [oc, ic]: [usize; 2]) -> Vec<f64> {
    let mut out = Vec::with_capacity(oc * ic * TILE + oc);
    for f in weight.chunks(9).take(oc * ic) {
        out.extend(transform(f));
    }
    out.extend((0..oc).map(|o| bias.get(o).copied().unwrap_or(0.0)));
    out
}

/// Unit roundoff of f32.
const UNIT: f64 = 1.0 / (1u64 << 24) as f64;

/// The checked forward kernel's rounding bounds (shaders/conv2d_winograd_forward.wgsl, CHECKED): per
/// output channel o the factors `Ku_o` (all channels first) and then `Kw_o` such that, for every
/// output of a 2x2 block, the f32 value by Winograd `v_w` and the f32 value by direct sums `v_d`
/// (conv2d_forward.wgsl's order: taps, then input channels, then the bias) differ by at most
///
/// `Ku_o T + Kw_o S + 3 u |v_w|`, with `u = 2^-24`, `d` the 4x4 patch under the block, `S` the sum of
/// |d| over the output's own 3x3 window and all input channels, and `T` the sum over channels, rows y
/// and columns x of the patch of `a_y a_x |d_cyx|`, where `a` counts how often the output's Winograd
/// sum uses a patch row (column): (1, 2, 3, 0) for an output in the block's first row (column),
/// (0, 3, 2, 1) in its second.
///
/// Where a block's decision (the pool's winner, and with a ReLU whether it is positive) holds for
/// every set of values within that bound of the Winograd ones, the direct kernel takes the same
/// decision; elsewhere the kernel sums directly. Why (first order in u; C input channels):
/// - `V = B^T d B`: each entry is `(d_a ± d_b) ± (d_c ± d_e)` of four patch values, computed with
///   error at most `2 u D`, D the sum of those four |d|; and |V| <= D.
/// - `M_k = sum_c U_ck V_ck` (U rounded to f32 from f64): error at most `(C + 4) u P_k`, with
///   `P_k = sum_c |U_ck| D_ck` (`C + 1` for the products and sums, 2 from V, 1 from U).
/// - an output sums 9 of the M (`A^T M A`) with 4 roundings in a row: error at most `(C + 8) u`
///   times the sum of its nine P_k, which is at most `Umax_o T` (`a_y a_x` is how many of its nine V
///   entries each patch value enters).
/// - the direct sums (9 taps, then C channels) err by at most `(C + 9) u Wmax_o S`.
/// - the bias is added to either with one rounding: `2 u |v|` and a little more.
///
/// So `Ku_o = 1.05 u (C + 8) Umax_o` and `Kw_o = 1.05 u (C + 9) Wmax_o`, with the f32 weights'
/// largest magnitudes; the 5% covers second-order terms and the rounding of T and S themselves.
/// `weight` is OIHW with 3x3 filters.
pub fn forward_bounds(weight: &[f64], [oc, ic]: [usize; 2]) -> Vec<f64> {
    let c = ic as f64;
    let filters = |o: usize| &weight[o * ic * 9..(o + 1) * ic * 9];
    let u_bounds = (0..oc).map(|o| {
        let u_max = filters(o)
            .chunks(9)
            .flat_map(transform)
            .map(|u| (u as f32).abs() as f64)
            .fold(0.0, f64::max);
        1.05 * UNIT * (c + 8.0) * u_max
    });
    let w_bounds = (0..oc).map(|o| {
        let w_max = filters(o)
            .iter()
            .map(|w| (*w as f32).abs() as f64)
            .fold(0.0, f64::max);
        1.05 * UNIT * (c + 9.0) * w_max
    });
    u_bounds.chain(w_bounds).collect()
}

/// Backward weights: U'[i][o][16], the transform of filter (o, i) turned by 180 degrees.
pub fn backward_weights(weight: &[f64], [oc, ic]: [usize; 2]) -> Vec<f64> {
    let mut out = Vec::with_capacity(oc * ic * TILE);
    for i in 0..ic {
        for o in 0..oc {
            let f = &weight[(o * ic + i) * 9..(o * ic + i + 1) * 9];
            let turned: Vec<f64> = (0..9).map(|k| f[8 - k]).collect();
            out.extend(transform(&turned));
        }
    }
    out
}

/// `B^T d B` of a 4x4 patch, row-major.
fn input_transform(d: &[[f64; 4]; 4]) -> [f64; TILE] {
    let mut t = [[0.0; 4]; 4];
    for c in 0..4 {
        t[0][c] = d[0][c] - d[2][c];
        t[1][c] = d[1][c] + d[2][c];
        t[2][c] = d[2][c] - d[1][c];
        t[3][c] = d[1][c] - d[3][c];
    }
    let mut v = [0.0; TILE];
    for r in 0..4 {
        v[r * 4] = t[r][0] - t[r][2];
        v[r * 4 + 1] = t[r][1] + t[r][2];
        v[r * 4 + 2] = t[r][2] - t[r][1];
        v[r * 4 + 3] = t[r][1] - t[r][3];
    }
    v
}

/// `A^T m A`: the 2x2 outputs, row-major.
fn output_transform(m: &[f64; TILE]) -> [f64; 4] {
    let s0: [f64; 4] = std::array::from_fn(|c| m[c] + m[4 + c] + m[8 + c]);
    let s1: [f64; 4] = std::array::from_fn(|c| m[4 + c] - m[8 + c] - m[12 + c]);
    [
        s0[0] + s0[1] + s0[2],
        s0[1] - s0[2] - s0[3],
        s1[0] + s1[1] + s1[2],
        s1[1] - s1[2] - s1[3],
    ]
}

/// G (4x2) of F(3x3, 2x2), applied to 2x2 blocks of output gradients; its last row is the negative of
/// the usual one because B's last column is ([`input_transform`] is shared with F(2x2, 3x3)).
const G_GRAD: [[f64; 2]; 4] = [[1.0, 0.0], [0.5, 0.5], [0.5, -0.5], [0.0, -1.0]];

/// A^T (3x4) of F(3x3, 2x2): the 3x3 result from the 4x4 products.
const A_GRAD: [[f64; 4]; 3] = [
    [1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, 1.0],
];

/// Weight gradient of a 3x3 stride-1 conv for one sample: dW[o][i][ky][kx] = sum over outputs of
/// `gout * x` under the tap (OIHW), by F(3x3, 2x2) over 2x2 blocks of the output plane, whose height
/// and width must be even. The bias gradient is not part of it.
pub fn weight_gradient(
    [ic, ih, iw]: [usize; 3],
    [oc, oh, ow]: [usize; 3],
    [ph, pw]: [usize; 2],
    x: &[f64],
    gout: &[f64],
) -> Vec<f64> {
    assert!(oh % 2 == 0 && ow % 2 == 0, "outputs in whole 2x2 blocks");
    let mut m = vec![[0.0; TILE]; oc * ic];
    for by in 0..oh / 2 {
        for bx in 0..ow / 2 {
            let (y0, x0) = ((2 * by) as i64 - ph as i64, (2 * bx) as i64 - pw as i64);
            for o in 0..oc {
                let g = |dy: usize, dx: usize| gout[(o * oh + 2 * by + dy) * ow + 2 * bx + dx];
                // G g G^T.
                let mut gt = [0.0; TILE];
                for r in 0..4 {
                    for c in 0..4 {
                        gt[r * 4 + c] = (0..2)
                            .flat_map(|a| (0..2).map(move |b| (a, b)))
                            .map(|(a, b)| G_GRAD[r][a] * g(a, b) * G_GRAD[c][b])
                            .sum();
                    }
                }
                for i in 0..ic {
                    let d = patch(x, [ic, ih, iw], i, [y0, x0]);
                    let v = input_transform(&d);
                    for k in 0..TILE {
                        m[o * ic + i][k] += gt[k] * v[k];
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(oc * ic * 9);
    for mm in &m {
        for row in &A_GRAD {
            for col in &A_GRAD {
                out.push(
                    (0..4)
                        .flat_map(|r| (0..4).map(move |c| (r, c)))
                        .map(|(r, c)| row[r] * mm[r * 4 + c] * col[c])
                        .sum(),
                );
            }
        }
    }
    out
}

/// The 4x4 patch of channel `i` of `x` whose top-left corner is at `[y0, x0]`, zero outside.
fn patch(x: &[f64], [_, ih, iw]: [usize; 3], i: usize, [y0, x0]: [i64; 2]) -> [[f64; 4]; 4] {
    std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            let (y, xx) = (y0 + r as i64, x0 + c as i64);
            if y < 0 || xx < 0 || y >= ih as i64 || xx >= iw as i64 {
                0.0
            } else {
                x[(i * ih + y as usize) * iw + xx as usize]
            }
        })
    })
}

/// The 3x3 stride-1 correlation `out[o][y][x] = sum w[o][i][ky][kx] x[i][y + ky - pad][x + kx - pad]`
/// (zero outside) over 2x2 blocks, with `u` from [`forward_weights`] (whose bias it leaves out) or
/// [`backward_weights`]; the output's height and width must be even.
pub fn correlate(
    u: &[f64],
    [ic, ih, iw]: [usize; 3],
    [oc, oh, ow]: [usize; 3],
    [ph, pw]: [usize; 2],
    x: &[f64],
) -> Vec<f64> {
    assert!(oh % 2 == 0 && ow % 2 == 0, "outputs in whole 2x2 blocks");
    let mut out = vec![0.0; oc * oh * ow];
    for by in 0..oh / 2 {
        for bx in 0..ow / 2 {
            let (y0, x0) = ((2 * by) as i64 - ph as i64, (2 * bx) as i64 - pw as i64);
            let v: Vec<[f64; TILE]> = (0..ic)
                .map(|i| {
                    let d = patch(x, [ic, ih, iw], i, [y0, x0]);
                    input_transform(&d)
                })
                .collect();
            for o in 0..oc {
                let mut m = [0.0; TILE];
                for (i, v) in v.iter().enumerate() {
                    let w = &u[(o * ic + i) * TILE..(o * ic + i + 1) * TILE];
                    for k in 0..TILE {
                        m[k] += w[k] * v[k];
                    }
                }
                let y = output_transform(&m);
                for (k, y) in y.into_iter().enumerate() {
                    out[(o * oh + 2 * by + k / 2) * ow + 2 * bx + k % 2] = y;
                }
            }
        }
    }
    out
}
