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
