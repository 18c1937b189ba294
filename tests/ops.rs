//! Each layer's GPU forward and backward kernels against the CPU f64 twin, and the backward passes
//! against central finite differences of the forward pass.

mod common;
use common::*;
use gig::Model;
use gig::ops::{self, Params64};

/// Single-layer models (the trailing flatten only makes the output a vector): layer 0 is under test.
const CASES: &[(&str, [usize; 3])] = &[
    // 3x3 stride-1 convs over whole 2x2 blocks run as Winograd's F(2x2, 3x3) (layer_engine); the
    // other convs, and these where the blocks do not fit, as direct convs.
    ("conv(1,4,3,p1) flatten", [1, 6, 6]),
    ("conv(3,4,3,nobias) flatten", [3, 8, 6]),
    ("conv(2,3,3,p2) flatten", [2, 4, 8]),
    ("conv(2,3,3,p1) flatten", [2, 5, 7]),
    ("conv(3,5,3x2,s2,p1x0) flatten", [3, 9, 8]),
    ("conv(2,3,5,s3,p2,nobias) flatten", [2, 11, 7]),
    ("relu flatten", [2, 5, 4]),
    ("maxpool2 flatten", [3, 6, 8]),
    ("maxpool(3,s2,p1) flatten", [2, 9, 7]),
    ("maxpool(3x2,s1) flatten", [1, 5, 6]),
    ("avgpool2 flatten", [2, 7, 6]),
    ("avgpool(3,s2,p1) flatten", [2, 9, 10]),
    ("flatten linear(30,7)", [3, 2, 5]),
    ("flatten linear(12,5,nobias)", [1, 3, 4]),
    // Weights too large for one uniform binding: on CPU adapters attribution reads them from two
    // uniform windows (src/gpu/windows.rs), the second holding the last 256 inputs.
    ("flatten linear(1600,12)", [1, 40, 40]),
];

const ROWS: usize = 3;

/// Every layer in kernels of its own, with Winograd's kernels wherever they fit (forward too), on any
/// adapter.
fn layer_engine(model: &Model) -> gig::gpu::Engine {
    let tiling = gig::gpu::Tiling {
        winograd: gig::gpu::Winograd::Everywhere,
        ..gig::gpu::Tiling::for_adapter(&gpu().info)
    };
    let options = gig::gpu::EngineOptions {
        fuse: false,
        tiling: Some(tiling),
        ..gig::gpu::EngineOptions::default()
    };
    gig::gpu::Engine::new(gpu(), model, options).unwrap()
}

struct Case {
    model: Model,
    /// Index of the layer under test.
    layer: usize,
    input: Vec<f32>,
    grad_out: Vec<f32>,
}

fn cases() -> Vec<Case> {
    CASES
        .iter()
        .enumerate()
        .map(|(i, (arch, shape))| {
            let model = Model::random_from_arch(arch, *shape, i as u64).unwrap();
            let layer = if arch.starts_with("flatten") { 1 } else { 0 };
            let (inl, outl) = (model.shapes()[layer].len(), model.shapes()[layer + 1].len());
            Case {
                input: uniform(ROWS * inl, -1.0, 1.0, 100 + i as u64),
                grad_out: uniform(ROWS * outl, -1.0, 1.0, 200 + i as u64),
                model,
                layer,
            }
        })
        .collect()
}

impl Case {
    fn params(&self) -> Option<Params64> {
        self.model.params(self.layer).map(Params64::from)
    }

    fn cpu_forward(&self, x: &[f64]) -> Vec<f64> {
        let s = self.model.shapes();
        let l = self.layer;
        ops::forward(
            &self.model.layers()[l],
            s[l],
            s[l + 1],
            self.params().as_ref(),
            x,
        )
    }

    fn cpu_backward(&self, x: &[f64], g: &[f64]) -> Vec<f64> {
        let s = self.model.shapes();
        let l = self.layer;
        ops::backward(
            &self.model.layers()[l],
            s[l],
            s[l + 1],
            self.params().as_ref(),
            x,
            g,
        )
    }

    fn rows(&self, v: &[f32], len: usize) -> Vec<Vec<f64>> {
        v.chunks(len).map(to_f64).collect()
    }

    /// d<g, f(x)>/dx by central differences in f64; exact for these piecewise-linear layers away from kinks.
    fn finite_differences(&self, x: &[f64], g: &[f64]) -> Vec<f64> {
        let eps = 1e-6;
        (0..x.len())
            .map(|i| {
                let mut hi = x.to_vec();
                let mut lo = x.to_vec();
                hi[i] += eps;
                lo[i] -= eps;
                let dot = |v: Vec<f64>| v.iter().zip(g).map(|(a, b)| a * b).sum::<f64>();
                (dot(self.cpu_forward(&hi)) - dot(self.cpu_forward(&lo))) / (2.0 * eps)
            })
            .collect()
    }
}

#[test]
fn forward_kernels_match_cpu_twin() {
    for c in cases() {
        let name = c.model.layers()[c.layer].to_string();
        let (inl, outl) = (
            c.model.shapes()[c.layer].len(),
            c.model.shapes()[c.layer + 1].len(),
        );
        let gpu = layer_engine(&c.model)
            .layer_forward(c.layer, &c.input)
            .unwrap();
        assert_eq!(gpu.len(), ROWS * outl, "{name}");
        for (r, x) in c.rows(&c.input, inl).iter().enumerate() {
            let want = c.cpu_forward(x);
            let err = rel_l2(&to_f64(&gpu[r * outl..(r + 1) * outl]), &want);
            assert!(err < 1e-6, "{name} row {r}: forward relative L2 {err}");
        }
    }
}

#[test]
fn backward_kernels_match_cpu_twin_and_finite_differences() {
    for c in cases() {
        let name = c.model.layers()[c.layer].to_string();
        let (inl, outl) = (
            c.model.shapes()[c.layer].len(),
            c.model.shapes()[c.layer + 1].len(),
        );
        let gpu = layer_engine(&c.model)
            .layer_backward(c.layer, &c.input, &c.grad_out)
            .unwrap();
        assert_eq!(gpu.len(), ROWS * inl, "{name}");
        let xs = c.rows(&c.input, inl);
        let gs = c.rows(&c.grad_out, outl);
        for r in 0..ROWS {
            let twin = c.cpu_backward(&xs[r], &gs[r]);
            let fd = c.finite_differences(&xs[r], &gs[r]);
            let g = to_f64(&gpu[r * inl..(r + 1) * inl]);
            let e_twin = rel_l2(&g, &twin);
            let e_fd_cpu = rel_l2(&twin, &fd);
            let e_fd_gpu = rel_l2(&g, &fd);
            assert!(e_twin < 1e-6, "{name} row {r}: GPU vs CPU twin {e_twin}");
            assert!(
                e_fd_cpu < 1e-7,
                "{name} row {r}: CPU twin vs finite differences {e_fd_cpu}"
            );
            assert!(
                e_fd_gpu < 1e-5,
                "{name} row {r}: GPU vs finite differences {e_fd_gpu}"
            );
        }
    }
}

#[test]
fn max_pool_sends_ties_to_the_first_maximum() {
    // PyTorch's rule: on equal values the gradient goes to the first in row-major window order.
    let model = Model::random_from_arch("maxpool2 flatten", [1, 2, 2], 0).unwrap();
    let g = unfused(&model)
        .layer_backward(0, &[0.5, 0.5, 0.5, 0.2], &[1.0])
        .unwrap();
    assert_eq!(g, vec![1.0, 0.0, 0.0, 0.0]);
    let twin = ops::pool::max_backward(
        &gig::model::Pool2d {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        },
        [1, 2, 2],
        [1, 1, 1],
        &[0.5, 0.5, 0.5, 0.2],
        &[1.0],
    );
    assert_eq!(twin, vec![1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn relu_has_zero_gradient_at_zero() {
    let model = Model::random_from_arch("relu flatten", [1, 1, 3], 0).unwrap();
    let g = unfused(&model)
        .layer_backward(0, &[-1.0, 0.0, 2.0], &[5.0, 6.0, 7.0])
        .unwrap();
    assert_eq!(g, vec![0.0, 0.0, 7.0]);
}

#[test]
fn winograd_transforms_equal_the_direct_conv_in_f64() {
    use gig::model::Layer;
    use ops::winograd;
    // Padding 0, 1 and 2; forward over the outputs, backward (the correlation of the output gradient
    // with the turned, transposed weights, padded by 2 - p) over the inputs.
    for (i, (arch, shape)) in [
        ("conv(3,4,3) flatten", [3, 8, 6]),
        ("conv(2,5,3,p1) flatten", [2, 6, 10]),
        ("conv(1,3,3,p2) flatten", [1, 4, 2]),
    ]
    .into_iter()
    .enumerate()
    {
        let model = Model::random_from_arch(arch, shape, 40 + i as u64).unwrap();
        let Layer::Conv2d(c) = model.layers()[0] else {
            unreachable!()
        };
        assert!(winograd::applies(&c));
        let p = Params64::from(model.params(0).unwrap());
        let (inp, out) = (model.shapes()[0].chw(), model.shapes()[1].chw());
        let x = to_f64(&uniform(inp.iter().product(), -1.0, 1.0, 7));
        let g = to_f64(&uniform(out.iter().product(), -1.0, 1.0, 8));
        let sizes = [out[0], inp[0]];

        let u = winograd::forward_weights(&p.weight, &p.bias, sizes);
        let mut fwd = winograd::correlate(&u, inp, out, c.padding, &x);
        let plane = out[1] * out[2];
        for (k, v) in fwd.iter_mut().enumerate() {
            *v += p.bias[k / plane];
        }
        let direct = ops::conv2d::forward(&c, inp, out, &p, &x);
        assert!(rel_l2(&fwd, &direct) < 1e-13, "{arch}: forward");

        let u = winograd::backward_weights(&p.weight, sizes);
        let pad = c.padding.map(|p| 2 - p);
        let bwd = winograd::correlate(&u, out, inp, pad, &g);
        let direct = ops::conv2d::backward(&c, inp, out, &p, &g);
        assert!(rel_l2(&bwd, &direct) < 1e-13, "{arch}: backward");

        // The weight gradient by F(3x3, 2x2) over the output's 2x2 blocks (all three are even).
        let grad = winograd::weight_gradient(inp, out, c.padding, &x, &g);
        let direct = ops::conv2d::weight_grad(&c, inp, out, &x, &g);
        assert!(
            rel_l2(&grad, &direct.weight) < 1e-13,
            "{arch}: weight gradient"
        );
    }
}

#[test]
fn winograd_kernels_run_where_the_blocks_fit() {
    // By default only CPU adapters use Winograd, and only for input gradients (Tiling::CPU).
    let auto = gig::gpu::Tiling::for_adapter(&gpu().info);
    for (arch, shape, fits) in [
        ("conv(1,4,3,p1) flatten", [1, 6, 6], true),
        ("conv(3,4,3,nobias) flatten", [3, 8, 6], true),
        ("conv(2,3,3,p2) flatten", [2, 4, 8], true),
        ("conv(2,3,3,p1) flatten", [2, 5, 7], false),
        ("conv(3,5,3x2,s2,p1x0) flatten", [3, 9, 8], false),
    ] {
        let model = Model::random_from_arch(arch, shape, 0).unwrap();
        let count = |e: &gig::gpu::Engine| {
            let labels = e.dispatch_labels();
            labels.iter().filter(|l| l.contains("winograd")).count()
        };
        let by_default = usize::from(auto.winograd != gig::gpu::Winograd::Never && fits);
        assert_eq!(count(&unfused(&model)), by_default, "{arch}");
        assert_eq!(
            count(&layer_engine(&model)),
            2 * usize::from(fits),
            "{arch}"
        );
    }
}

/// One block's 2x2 outputs in f32 by Winograd, in the order conv2d_winograd_forward.wgsl computes
/// them: transform each channel's 4x4 patch, multiply with U and sum over channels, transform back.
fn winograd_block_f32(u: &[f32], patches: &[[[f32; 4]; 4]]) -> [f32; 4] {
    let mut m = [0f32; 16];
    for (c, d) in patches.iter().enumerate() {
        let mut t = [[0f32; 4]; 4];
        for q in 0..4 {
            t[0][q] = d[0][q] - d[2][q];
            t[1][q] = d[1][q] + d[2][q];
            t[2][q] = d[2][q] - d[1][q];
            t[3][q] = d[1][q] - d[3][q];
        }
        for k in 0..4 {
            let v = [
                t[k][0] - t[k][2],
                t[k][1] + t[k][2],
                t[k][2] - t[k][1],
                t[k][1] - t[k][3],
            ];
            for (j, v) in v.into_iter().enumerate() {
                m[k * 4 + j] += u[c * 16 + k * 4 + j] * v;
            }
        }
    }
    let s0: [f32; 4] = std::array::from_fn(|j| m[j] + m[4 + j] + m[8 + j]);
    let s1: [f32; 4] = std::array::from_fn(|j| m[4 + j] - m[8 + j] - m[12 + j]);
    [
        s0[0] + s0[1] + s0[2],
        s0[1] - s0[2] - s0[3],
        s1[0] + s1[1] + s1[2],
        s1[1] - s1[2] - s1[3],
    ]
}

#[test]
fn winograd_rounding_bound_holds() {
    // ops::winograd::forward_bounds: the f32 Winograd value of each output of a block and the f32
    // direct sum (taps, then channels, then the bias, as conv2d_forward.wgsl) differ by at most
    // Ku T + Kw S + 3 u |v|. The checked forward kernel relies on it to leave a pool's winner to
    // Winograd. Patches with mixed signs and channels of very different magnitudes (cancellation),
    // biases from small to large.
    use ops::winograd;
    let unit = 2f64.powi(-24);
    let uses = [[1.0, 2.0, 3.0, 0.0], [0.0, 3.0, 2.0, 1.0]];
    for (ic, seed) in [(1usize, 1u64), (3, 2), (16, 3), (32, 4)] {
        let oc = 4;
        let weight = to_f64(&uniform(oc * ic * 9, -1.0, 1.0, seed));
        let bounds = winograd::forward_bounds(&weight, [oc, ic]);
        let u: Vec<f32> = winograd::forward_weights(&weight, &vec![0.0; oc], [oc, ic])
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let mut worst: f64 = 0.0;
        for trial in 0..300u64 {
            let values = uniform(ic * 16, -1.0, 1.0, 1000 * seed + trial);
            let scales = uniform(ic, -3.0, 3.0, 2000 * seed + trial);
            let patches: Vec<[[f32; 4]; 4]> = (0..ic)
                .map(|c| {
                    let scale = 10f32.powf(scales[c]);
                    std::array::from_fn(|y| {
                        std::array::from_fn(|x| values[c * 16 + y * 4 + x] * scale)
                    })
                })
                .collect();
            let bias =
                uniform(1, -1.0, 1.0, 3000 * seed + trial)[0] * 10f32.powi((trial % 7) as i32 - 3);
            for o in 0..oc {
                let y = winograd_block_f32(&u[o * ic * 16..(o + 1) * ic * 16], &patches);
                for (k, yk) in y.into_iter().enumerate() {
                    let (oy, ox) = (k / 2, k % 2);
                    let mut acc = 0f32;
                    let (mut spread, mut window) = (0.0, 0.0);
                    for (c, d) in patches.iter().enumerate() {
                        let mut part = 0f32;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let w = weight[((o * ic + c) * 3 + ky) * 3 + kx] as f32;
                                part += w * d[oy + ky][ox + kx];
                                window += d[oy + ky][ox + kx].abs() as f64;
                            }
                        }
                        acc += part;
                        for (ty, row) in d.iter().enumerate() {
                            for (tx, v) in row.iter().enumerate() {
                                spread += uses[oy][ty] * uses[ox][tx] * v.abs() as f64;
                            }
                        }
                    }
                    let (vw, vd) = (yk + bias, acc + bias);
                    let bound =
                        bounds[o] * spread + bounds[oc + o] * window + 3.0 * unit * vw.abs() as f64;
                    let diff = (vw as f64 - vd as f64).abs();
                    assert!(
                        diff <= bound,
                        "{ic} channels, trial {trial}, output {o}.{k}: |{vw} - {vd}| > {bound}"
                    );
                    worst = worst.max(diff / bound);
                }
            }
        }
        // The bound is a worst case; typical differences are far inside it.
        assert!(worst < 1.0, "{ic} channels: {worst}");
    }
}
