//! Integrated Gradients on the GPU against the CPU f64 reference, closed forms and the chunking rules.

mod common;
use common::*;
use gig::backend::Batch;
use gig::gpu::Tiling;
use gig::method::{self, Method, Settings};
use gig::quadrature::Rule;
use gig::{Backend, CpuBackend, Engine, EngineOptions, Model, integrated_gradients};

fn batch(model: &Model, n: usize, seed: u64) -> Batch {
    random_batch(model, n, seed, (0.0, 0.2))
}

#[test]
fn gpu_matches_cpu_for_every_rule() {
    let model = Model::random_from_arch(
        "conv(1,4,3,p1) relu maxpool2 conv(4,6,3,p1) relu avgpool2 flatten linear(54,16) relu linear(16,5)",
        [1, 12, 12],
        1,
    )
    .unwrap();
    let b = batch(&model, 3, 10);
    // By default the first conv's input gradient is folded (taken after the sum) and |dF/dx| is
    // left out; with gradient norms it is not.
    let (mut folded, mut gpu) = (engine(&model), with_norms(&model));
    let mut cpu = CpuBackend::new(&model);
    for rule in Rule::ALL {
        let q = rule.nodes(20).unwrap();
        let g = integrated_gradients(&mut gpu, &b, &q).unwrap();
        let c = integrated_gradients(&mut cpu, &b, &q).unwrap();
        let f = integrated_gradients(&mut folded, &b, &q).unwrap();
        let err = rel_l2(&f.values, &c.values);
        assert!(err < 1e-5, "{rule}, folded: relative L2 {err}");
        for (fi, gi) in f.images.iter().zip(&g.images) {
            assert!(fi.path.grad_norm.iter().all(|n| n.is_nan()));
            // The folded program makes the first conv's outputs along the path from its outputs at
            // the ends (linearity), so F differs by rounding only.
            for (a, b) in fi.path.f.iter().zip(&gi.path.f) {
                assert!(
                    (a - b).abs() < 1e-6 * (1.0 + b.abs()),
                    "{rule}: F {a} vs {b}"
                );
            }
            for (a, b) in fi.path.slope.iter().zip(&gi.path.slope) {
                assert!(
                    (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                    "{rule}: slope {a} vs {b}"
                );
            }
            let d = (fi.attribution_sum - gi.attribution_sum).abs();
            assert!(d < 1e-5 * (1.0 + gi.attribution_sum.abs()), "{rule}");
        }
        let err = rel_l2(&g.values, &c.values);
        assert!(err < 1e-5, "{rule}: relative L2 {err}");
        for (gi, ci) in g.images.iter().zip(&c.images) {
            assert!((gi.f_input - ci.f_input).abs() < 1e-5 * (1.0 + ci.f_input.abs()));
            assert!((gi.f_baseline - ci.f_baseline).abs() < 1e-5 * (1.0 + ci.f_baseline.abs()));
            // The attribution sum is the quadrature of the slopes dF/dalpha.
            let slopes: f64 = gi
                .path
                .weights
                .iter()
                .zip(&gi.path.slope)
                .map(|(w, s)| w * s)
                .sum();
            assert!(
                (slopes - gi.attribution_sum).abs() < 1e-5 * (1.0 + slopes.abs()),
                "{rule}"
            );
            for k in 0..q.len() {
                assert!(
                    (gi.path.slope[k] - ci.path.slope[k]).abs()
                        < 1e-5 * (1.0 + ci.path.slope[k].abs())
                );
                assert!((gi.path.f[k] - ci.path.f[k]).abs() < 1e-5 * (1.0 + ci.path.f[k].abs()));
                assert!(
                    (gi.path.grad_norm[k] - ci.path.grad_norm[k]).abs()
                        < 1e-5 * (1.0 + ci.path.grad_norm[k])
                );
            }
        }
    }
}

#[test]
fn linear_model_gives_exact_ig() {
    // F = w_t . x + c, so IG = (x - b) * w_t exactly, for every rule and step count.
    let model = Model::random_from_arch("flatten linear(48,4)", [3, 4, 4], 2).unwrap();
    let b = batch(&model, 4, 20);
    let w = &model.params(1).unwrap().weight;
    let mut gpu = engine(&model);
    for rule in Rule::ALL {
        for steps in [rule.min_steps(), 7] {
            let ig = integrated_gradients(&mut gpu, &b, &rule.nodes(steps).unwrap()).unwrap();
            for i in 0..4 {
                let t = b.targets[i];
                let exact: Vec<f64> = (0..48)
                    .map(|d| {
                        (b.inputs[i * 48 + d] as f64 - b.baselines[i * 48 + d] as f64)
                            * w[t * 48 + d] as f64
                    })
                    .collect();
                let err = rel_l2(&ig.values[i * 48..(i + 1) * 48], &exact);
                assert!(err < 1e-6, "{rule} {steps}: relative L2 {err}");
                assert!(
                    ig.images[i].delta.abs() < 1e-5,
                    "{rule}: delta {}",
                    ig.images[i].delta
                );
            }
        }
    }
}

#[test]
fn odd_shapes_match_cpu() {
    // Three channels, non-square input, strides, paddings, rectangular kernels, overlapping pools.
    let model = Model::random_from_arch(
        "conv(3,5,3x2,s2,p1x0) relu maxpool(3,s2,p1) conv(5,4,3,p1,nobias) relu avgpool(2,s1) flatten linear(32,6)",
        [3, 17, 13],
        3,
    )
    .unwrap();
    let b = batch(&model, 2, 30);
    let q = Rule::GaussLegendre.nodes(16).unwrap();
    let g = integrated_gradients(&mut engine(&model), &b, &q).unwrap();
    let c = integrated_gradients(&mut CpuBackend::new(&model), &b, &q).unwrap();
    let err = rel_l2(&g.values, &c.values);
    assert!(err < 1e-5, "relative L2 {err}");
}

fn small_cnn() -> Model {
    Model::random_from_arch(
        "conv(1,3,3,p1) relu maxpool2 flatten linear(48,5)",
        [1, 8, 8],
        4,
    )
    .unwrap()
}

#[test]
fn chunked_equals_unchunked_bit_for_bit_and_reruns_are_identical() {
    let model = small_cnn();
    let b = batch(&model, 5, 40);
    let q = Rule::GaussLegendre.nodes(13).unwrap();
    let mut whole = engine(&model);
    let one = integrated_gradients(&mut whole, &b, &q).unwrap();
    assert_eq!((one.stats.chunks, one.stats.groups), (1, 1));
    let again = integrated_gradients(&mut whole, &b, &q).unwrap();
    assert_eq!(one.values, again.values, "rerun differs");
    for (rows, images) in [(7, 2), (1, 1), (15, 5), (40, 3)] {
        let options = EngineOptions {
            max_rows_per_chunk: Some(rows),
            max_images_per_group: Some(images),
            ..EngineOptions::default()
        };
        let mut chunked = Engine::new(gpu(), &model, options).unwrap();
        let split = integrated_gradients(&mut chunked, &b, &q).unwrap();
        assert!(
            split.stats.chunks > 1,
            "{rows} rows per chunk did not split"
        );
        assert_eq!(split.stats.groups, 5_usize.div_ceil(images));
        assert_eq!(
            split.stats.submissions, split.stats.chunks,
            "one submission per chunk"
        );
        assert_eq!(
            split.stats.readbacks, split.stats.groups,
            "one readback per group"
        );
        assert_eq!(
            one.values, split.values,
            "chunks of {rows} rows, groups of {images} images"
        );
        for (a, s) in one.images.iter().zip(&split.images) {
            assert_eq!((a.f_input, a.f_baseline), (s.f_input, s.f_baseline));
            assert_eq!(a.path.f, s.path.f);
            assert_eq!(a.path.slope, s.path.slope);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.path.grad_norm), bits(&s.path.grad_norm));
        }
    }
}

#[test]
fn dispatches_per_chunk_do_not_grow_with_steps() {
    let model = small_cnn();
    let b = batch(&model, 2, 50);
    // path, conv+relu+maxpool, linear; linear (seeded), maxpool, conv; diagnostics, accumulate;
    // finish. Folded: conv at the path's ends (once per group), relu+maxpool along the path from
    // those, linear; linear (seeded); diagnostics, accumulate; finish (the accumulators' sum, then
    // the conv's transpose).
    for (mut gpu, per_attribution, per_chunk) in
        [(with_norms(&model), 9, 8), (engine(&model), 8, 5)]
    {
        let counts: Vec<(usize, usize, usize)> = [1, 10, 100, 400]
            .into_iter()
            .map(|steps| {
                let q = Rule::RiemannMiddle.nodes(steps).unwrap();
                let s = integrated_gradients(&mut gpu, &b, &q).unwrap().stats;
                (s.dispatches, s.submissions, s.readbacks)
            })
            .collect();
        assert!(
            counts.iter().all(|c| *c == (per_attribution, 1, 1)),
            "{counts:?}"
        );
        assert_eq!(gpu.dispatches_per_chunk(), per_chunk);
    }
}

#[test]
fn more_than_65535_workgroups_along_one_axis() {
    // 1,400 images x 48 steps = 67,200 gradient rows in one chunk; the diagnostics kernel runs one
    // workgroup per row (70,000 with F(x) and F(b)), so its grid must be two-dimensional.
    let model = Model::random_from_arch("flatten linear(16,3)", [1, 4, 4], 5).unwrap();
    let n = 1400;
    let b = batch(&model, n, 60);
    let mut gpu = engine(&model);
    let ig = integrated_gradients(&mut gpu, &b, &Rule::GaussLegendre.nodes(48).unwrap()).unwrap();
    assert_eq!(ig.stats.chunks, 1);
    assert!(ig.stats.gradient_rows + ig.stats.forward_rows > 65535);
    let w = &model.params(1).unwrap().weight;
    for i in [0, 1, 700, 1398, 1399] {
        let t = b.targets[i];
        for d in 0..16 {
            let exact = (b.inputs[i * 16 + d] as f64 - b.baselines[i * 16 + d] as f64)
                * w[t * 16 + d] as f64;
            assert!(
                (ig.values[i * 16 + d] - exact).abs() < 1e-6,
                "image {i} value {d}"
            );
        }
        assert!(ig.images[i].delta.abs() < 1e-5);
        assert!(
            ig.images[i]
                .path
                .grad_norm
                .iter()
                .all(|g| (g - ig.images[i].path.grad_norm[0]).abs() < 1e-6)
        );
    }
}

#[test]
fn a_device_with_tiny_limits_gets_the_same_answer() {
    // A caller's own device (Gpu::from_device) with 64 KiB storage bindings and 16 workgroups per
    // dimension: the engine must split into many chunks and two-dimensional grids, and agree exactly.
    // With 4 storage buffers per stage (downlevel) the first conv's input gradient cannot be folded;
    // with 8 it is.
    let model = Model::random_from_arch(
        "conv(1,4,3,p1) relu maxpool2 flatten linear(64,3)",
        [1, 8, 8],
        6,
    )
    .unwrap();
    let b = batch(&model, 6, 70);
    let q = Rule::GaussLegendre.nodes(20).unwrap();
    let folded = integrated_gradients(&mut engine(&model), &b, &q).unwrap();
    let unfolded = integrated_gradients(&mut with_norms(&model), &b, &q).unwrap();
    // Soft cells too: their program folds the first conv, whose ends are bound per group.
    let plans = vec![cells(9); 6];
    let soft_reference = engine(&model).evaluate(&b, &plans).unwrap();

    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap();
    for storage_buffers in [4, 8] {
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: 64 << 10,
            max_compute_workgroups_per_dimension: 16,
            max_storage_buffers_per_shader_stage: storage_buffers,
            ..wgpu::Limits::downlevel_defaults()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            required_limits: limits,
            ..Default::default()
        }))
        .unwrap();
        let small = gig::Gpu::from_device(device, queue);
        let mut engine = Engine::new(&small, &model, EngineOptions::default()).unwrap();
        let ig = integrated_gradients(&mut engine, &b, &q).unwrap();
        assert!(
            ig.stats.chunks > 1,
            "expected several chunks, got {}",
            ig.stats.chunks
        );
        let reference = if storage_buffers < 5 {
            &unfolded
        } else {
            &folded
        };
        assert_eq!(
            reference.values, ig.values,
            "{storage_buffers} storage buffers"
        );
        let soft = engine.evaluate(&b, &plans).unwrap();
        assert!(soft.stats.chunks > 1);
        assert!(soft_reference.attributions == soft.attributions);
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let model = small_cnn();
    let dim = model.input_len();
    let mut x = uniform(dim, 0.0, 1.0, 1);
    let e = Batch::new(&model, x.clone(), vec![0.0; dim], vec![5])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("target 5 of image 0 is out of range") && e.contains("5 outputs"),
        "{e}"
    );
    let e = Batch::new(&model, x.clone(), vec![0.0; dim - 1], vec![1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("baselines hold 63 values"), "{e}");
    x[17] = f32::NAN;
    let e = Batch::new(&model, x, vec![0.0; dim], vec![1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("value 17 of image 0 is NaN"), "{e}");
    let b = batch(&model, 1, 0);
    let empty = gig::Quadrature {
        alphas: vec![],
        weights: vec![],
    };
    let e = integrated_gradients(&mut engine(&model), &b, &empty)
        .unwrap_err()
        .to_string();
    assert!(e.contains("zero steps"), "{e}");
    // A round driver whose first round evaluates nothing.
    let mut nothing = OneRound::new(vec![gig::schedule::PathPlan::new(empty, vec![])]);
    let options = gig::backend::RoundOptions {
        slots: 1,
        idg: false,
        soft: true,
    };
    let e = engine(&model)
        .rounds(&b, options, &mut nothing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("first round of a group"), "{e}");
    // A driver that says its first round is the last, then plans another.
    let mut twice = Twice(0, Rule::GaussLegendre.nodes(4).unwrap());
    let options = gig::backend::RoundOptions {
        slots: 1,
        idg: false,
        soft: false,
    };
    let e = engine(&model)
        .rounds(&b, options, &mut twice)
        .unwrap_err()
        .to_string();
    assert!(e.contains("after the one it said was the last"), "{e}");
}

/// Two rounds of the same points, the first announced as the last.
struct Twice(usize, gig::Quadrature);

impl gig::backend::RoundDriver for Twice {
    fn next(
        &mut self,
        images: std::ops::Range<usize>,
        _last: Option<&gig::Evaluation>,
    ) -> gig::Result<Option<Vec<gig::schedule::PathPlan>>> {
        self.0 += 1;
        let plan = gig::schedule::PathPlan::new(self.1.clone(), vec![]);
        Ok((self.0 <= 2).then(|| vec![plan; images.len()]))
    }

    fn weights(&mut self, images: std::ops::Range<usize>) -> Vec<Vec<f64>> {
        vec![vec![1.0]; images.len()]
    }

    fn final_weights(&mut self, images: std::ops::Range<usize>) -> Option<Vec<Vec<f64>>> {
        Some(self.weights(images))
    }

    fn max_points(&self) -> usize {
        self.1.len()
    }
}

#[test]
fn predicted_targets_and_logits_match_cpu() {
    let model = small_cnn();
    let x = uniform(37 * model.input_len(), 0.0, 1.0, 80);
    let g = engine(&model).logits(&x).unwrap();
    let c = CpuBackend::new(&model).logits(&x).unwrap();
    assert_eq!(g.len(), 37);
    for (a, b) in g.iter().zip(&c) {
        assert!(rel_l2(a, b) < 1e-6);
    }
    // Forward-only runs chunk as well.
    let options = EngineOptions {
        max_rows_per_chunk: Some(5),
        ..EngineOptions::default()
    };
    let chunked = Engine::new(gpu(), &model, options)
        .unwrap()
        .logits(&x)
        .unwrap();
    assert_eq!(g, chunked);
}

#[test]
fn fused_and_unfused_kernels_agree() {
    // Every fusion: ReLU epilogues of conv and linear, masks on conv, avg-pool and linear, max-pool
    // after ReLU, max-pool inside the conv (with and without ReLU, windows not covering the whole input),
    // a ReLU that cannot be fused (first layer, after pooling), the fused seed.
    for (arch, shape) in [
        (
            "relu conv(2,4,3,p1) relu maxpool2 conv(4,4,3,p1) relu avgpool2 relu conv(4,3,1) flatten linear(12,8) relu linear(8,4)",
            [2, 9, 8],
        ),
        (
            "conv(1,4,3,p1) maxpool2 conv(4,5,3) relu maxpool(3,s2,p1) flatten linear(20,3)",
            [1, 13, 12],
        ),
    ] {
        let model = Model::random_from_arch(arch, shape, 9).unwrap();
        let b = batch(&model, 3, 90);
        let q = Rule::GaussLegendre.nodes(12).unwrap();
        let fused = integrated_gradients(&mut engine(&model), &b, &q).unwrap();
        let plain = integrated_gradients(&mut unfused(&model), &b, &q).unwrap();
        let cpu = integrated_gradients(&mut CpuBackend::new(&model), &b, &q).unwrap();
        assert!(fused.stats.dispatches < plain.stats.dispatches, "{arch}");
        let err = rel_l2(&fused.values, &plain.values);
        assert!(err < 1e-6, "{arch}: fused vs unfused {err}");
        let err = rel_l2(&fused.values, &cpu.values);
        assert!(err < 1e-5, "{arch}: fused vs CPU {err}");
        for (f, c) in fused.images.iter().zip(&cpu.images) {
            assert!(
                (f.f_input - c.f_input).abs() < 1e-5 * (1.0 + c.f_input.abs()),
                "{arch}"
            );
        }
    }
}

#[test]
fn gpu_tiling_gives_the_same_attributions() {
    // The small tiles chosen for real GPUs, run here on whatever adapter the tests have.
    let model = Model::random_from_arch(
        "conv(3,6,3,s2,p1) relu maxpool(3,s2,p1) conv(6,5,3x2,p1) relu avgpool2 flatten linear(30,12) relu linear(12,4)",
        [3, 19, 17],
        10,
    )
    .unwrap();
    let b = batch(&model, 2, 100);
    let q = Rule::RiemannMiddle.nodes(9).unwrap();
    let mut results = Vec::new();
    for tiling in [Tiling::CPU, gig::gpu::Tiling::GPU] {
        let options = EngineOptions {
            tiling: Some(tiling),
            ..EngineOptions::default()
        };
        let mut e = Engine::new(gpu(), &model, options).unwrap();
        results.push(integrated_gradients(&mut e, &b, &q).unwrap().values);
    }
    let cpu = integrated_gradients(&mut CpuBackend::new(&model), &b, &q).unwrap();
    for r in &results {
        let err = rel_l2(r, &cpu.values);
        assert!(err < 1e-5, "relative L2 {err}");
    }
}

/// Midpoint cells: n equal cells of [0, 1], each evaluated at its middle as a whole (soft kernels).
fn cells(n: usize) -> gig::schedule::PathPlan {
    gig::schedule::PathPlan::cells(Rule::RiemannMiddle.nodes(n).unwrap(), vec![0.0, 1.0])
}

#[test]
fn soft_kernels_match_the_cpu_twin() {
    // Every soft path: conv+ReLU+max-pool fused, conv+ReLU with the mask stored for the next conv,
    // a ReLU before an overlapping max-pool (the pool applies it), avg-pool after a ReLU, linear+ReLU,
    // a ReLU that cannot be fused.
    for (arch, shape) in [
        (
            "conv(1,4,3,p1) relu maxpool2 conv(4,5,3,p1) relu conv(5,4,3) relu maxpool(3,s2,p1) flatten linear(16,8) relu linear(8,4)",
            [1, 12, 12],
        ),
        (
            "relu conv(2,3,3,s2,p1) relu avgpool2 relu flatten linear(12,5)",
            [2, 9, 8],
        ),
    ] {
        let model = Model::random_from_arch(arch, shape, 12).unwrap();
        let b = batch(&model, 3, 110);
        let plans = vec![cells(10); 3];
        let g = engine(&model).evaluate(&b, &plans).unwrap();
        let c = CpuBackend::new(&model).evaluate(&b, &plans).unwrap();
        let err = rel_l2(&g.attributions, &c.attributions);
        assert!(err < 1e-5, "{arch}: soft GPU vs CPU {err}");
        // dF/dalpha of each cell, which refinement aims by.
        let slopes = |e: &gig::backend::Evaluation| e.gradient_slope.concat();
        let err = rel_l2(&slopes(&g), &slopes(&c));
        assert!(err < 1e-5, "{arch}: soft dF/dalpha GPU vs CPU {err}");
        // Cells of width zero are points: the soft kernels then give the ordinary gradient.
        let mut points = cells(10);
        points.cells = vec![0.0; 10];
        let options = gig::backend::RoundOptions {
            slots: 1,
            idg: false,
            soft: true,
        };
        let mut one = OneRound::new(vec![points; 3]);
        let soft_points = engine(&model).rounds(&b, options, &mut one).unwrap();
        let hard = engine(&model).evaluate(&b, &one.plans).unwrap();
        let err = rel_l2(&soft_points.attributions, &hard.attributions);
        assert!(err < 1e-6, "{arch}: soft kernels on points vs hard {err}");
    }
}

#[test]
fn winograd_and_direct_convs_agree() {
    // A conv whose 2x2 blocks are max-pool windows, one whose ReLU feeds another conv (in soft kernels
    // its shares are stored), and one without padding.
    let model = Model::random_from_arch(
        "conv(1,6,3,p1) relu maxpool2 conv(6,8,3,p1) relu conv(8,4,3) relu flatten linear(64,5)",
        [1, 12, 12],
        21,
    )
    .unwrap();
    let b = batch(&model, 3, 120);
    let q = Rule::GaussLegendre.nodes(16).unwrap();
    let cpu = integrated_gradients(&mut CpuBackend::new(&model), &b, &q).unwrap();
    let soft_plans = vec![cells(12); 3];
    let cpu_soft = CpuBackend::new(&model).evaluate(&b, &soft_plans).unwrap();
    for winograd in [gig::gpu::Winograd::Everywhere, gig::gpu::Winograd::Never] {
        let on = winograd == gig::gpu::Winograd::Everywhere;
        let options = EngineOptions {
            tiling: Some(gig::gpu::Tiling {
                winograd,
                ..Tiling::CPU
            }),
            // The first conv's input gradient per point, not folded.
            gradient_norms: true,
            ..EngineOptions::default()
        };
        let mut e = Engine::new(gpu(), &model, options).unwrap();
        let hard = integrated_gradients(&mut e, &b, &q).unwrap();
        let labels = e.dispatch_labels();
        let used = labels.iter().filter(|l| l.contains("winograd")).count();
        // Three convs forward and backward.
        assert_eq!(used, if on { 6 } else { 0 }, "{labels:?}");
        let err = rel_l2(&hard.values, &cpu.values);
        assert!(err < 1e-5, "{winograd:?}: GPU vs CPU {err}");
        let soft = e.evaluate(&b, &soft_plans).unwrap();
        let err = rel_l2(&soft.attributions, &cpu_soft.attributions);
        assert!(err < 1e-5, "{winograd:?}: soft GPU vs CPU {err}");
    }
}

#[test]
fn pooled_backward_kernels_agree() {
    // Max-pools that the conv's input-gradient kernel applies: 2x2 windows after a conv padded by 1,
    // then by 0 and by 2 (Winograd or direct: the halo's parity differs), and 3x3 windows that leave
    // the conv's last row and column uncovered after a conv whose input is a ReLU's output (direct only:
    // Winograd's blocks are 2x2 windows). Last: convs fused with Winograd and directly.
    for (arch, shape, fused_winograd, fused_direct) in [
        (
            "conv(2,6,3,p1) relu maxpool2 relu conv(6,8,3,p1) relu maxpool3 flatten linear(32,5)",
            [2, 16, 16],
            1,
            2,
        ),
        (
            "conv(2,4,3) relu maxpool2 conv(4,6,3,p2) relu maxpool2 flatten linear(96,5)",
            [2, 14, 14],
            2,
            2,
        ),
    ] {
        pooled_backward_case(arch, shape, fused_winograd, fused_direct);
    }
}

fn pooled_backward_case(arch: &str, shape: [usize; 3], fused_winograd: usize, fused_direct: usize) {
    let model = Model::random_from_arch(arch, shape, 23).unwrap();
    let b = batch(&model, 3, 130);
    let q = Rule::GaussLegendre.nodes(12).unwrap();
    let cpu = integrated_gradients(&mut CpuBackend::new(&model), &b, &q).unwrap();
    let soft_plans = vec![cells(10); 3];
    let cpu_soft = CpuBackend::new(&model).evaluate(&b, &soft_plans).unwrap();
    for winograd in [gig::gpu::Winograd::Everywhere, gig::gpu::Winograd::Never] {
        let run = |pooled_backward_channels: usize| {
            let options = EngineOptions {
                tiling: Some(gig::gpu::Tiling {
                    winograd,
                    pooled_backward_channels,
                    soft_pooled_backward_channels: pooled_backward_channels,
                    pooled_direct_backward: true,
                    ..Tiling::CPU
                }),
                // The first conv's input gradient per point, not folded.
                gradient_norms: true,
                ..EngineOptions::default()
            };
            let mut e = Engine::new(gpu(), &model, options).unwrap();
            let hard = integrated_gradients(&mut e, &b, &q).unwrap();
            let hard_labels = e.dispatch_labels();
            let soft = e.evaluate(&b, &soft_plans).unwrap();
            let fused = |labels: Vec<String>| {
                labels
                    .iter()
                    .filter(|l| l.contains("backward (layers"))
                    .count()
            };
            (hard, soft, fused(hard_labels), fused(e.dispatch_labels()))
        };
        let (hard, soft, fused_hard, fused_soft) = run(1);
        let expected = if winograd == gig::gpu::Winograd::Never {
            fused_direct
        } else {
            fused_winograd
        };
        assert_eq!(
            (fused_hard, fused_soft),
            (expected, expected),
            "{arch} {winograd:?}"
        );
        let err = rel_l2(&hard.values, &cpu.values);
        assert!(err < 1e-5, "{arch} {winograd:?}: GPU vs CPU {err}");
        let err = rel_l2(&soft.attributions, &cpu_soft.attributions);
        assert!(err < 1e-5, "{arch} {winograd:?}: soft GPU vs CPU {err}");
        // The pool's own pass multiplies by the same shares in the same order: the same numbers.
        let (alone, alone_soft, none, none_soft) = run(usize::MAX);
        assert_eq!((none, none_soft), (0, 0));
        assert!(
            hard.values == alone.values,
            "{winograd:?}: fused pool differs"
        );
        assert!(
            soft.attributions == alone_soft.attributions,
            "{winograd:?}: fused soft pool differs"
        );
    }
}

#[test]
fn folded_accumulators_are_weighted_before_the_transpose() {
    // Several accumulators per image under a folded first conv: finish sums them by their weights
    // (the SUM pass), then applies the conv's transpose once. Against the CPU twin, and against the
    // same sum with each accumulator's weight in its rows and one accumulator. Small chunks split
    // an accumulator's rows, whose first row starts it from zero.
    let model = small_cnn();
    let b = batch(&model, 3, 170);
    let q = Rule::GaussLegendre.nodes(12).unwrap();
    let weights = vec![0.5, 2.0, -1.0];
    let mut plan = gig::schedule::PathPlan::new(q.clone(), Vec::new());
    plan.slots = (0..q.alphas.len()).map(|k| k % 3).collect();
    let options = |slots| gig::backend::RoundOptions {
        slots,
        idg: false,
        soft: false,
    };
    let driver = |plan: &gig::schedule::PathPlan, weights: &[f64]| {
        OneRound::weighted(vec![plan.clone(); 3], weights.to_vec())
    };
    let cpu = CpuBackend::new(&model)
        .rounds(&b, options(3), &mut driver(&plan, &weights))
        .unwrap();
    let mut one = plan.clone();
    one.slots.clear();
    for (k, w) in one.gradient.weights.iter_mut().enumerate() {
        *w *= weights[k % 3];
    }
    let single = engine(&model)
        .rounds(&b, options(1), &mut driver(&one, &[1.0]))
        .unwrap();
    for rows in [None, Some(5)] {
        let o = EngineOptions {
            max_rows_per_chunk: rows,
            ..EngineOptions::default()
        };
        let mut e = Engine::new(gpu(), &model, o).unwrap();
        let gpu = e
            .rounds(&b, options(3), &mut driver(&plan, &weights))
            .unwrap();
        let labels = e.dispatch_labels();
        assert!(
            labels.iter().any(|l| l == "finish (sum of accumulators)"),
            "{labels:?}"
        );
        let err = rel_l2(&gpu.attributions, &cpu.attributions);
        assert!(err < 1e-5, "{rows:?}: GPU vs CPU {err}");
        let err = rel_l2(&gpu.attributions, &single.attributions);
        assert!(err < 1e-6, "{rows:?}: three accumulators vs one {err}");
    }
}

#[test]
fn soft_programs_fold_the_first_conv() {
    // A first conv followed by a max-pool (through a ReLU or not) runs once per image at the path's
    // ends, and the pool reads its input from those; other first layers run per row. Nine images make
    // 18 ends, more than one workgroup's lanes.
    for (arch, shape, folds) in [
        (
            "conv(1,4,3,p1) relu maxpool2 conv(4,5,3,p1) relu maxpool2 flatten linear(45,5)",
            [1, 12, 12],
            true,
        ),
        (
            "conv(2,3,3,s2,p1) maxpool2 flatten linear(12,5)",
            [2, 9, 8],
            true,
        ),
        (
            "conv(1,3,3,p1) relu conv(3,2,3) relu flatten linear(200,4)",
            [1, 12, 12],
            false,
        ),
    ] {
        let model = Model::random_from_arch(arch, shape, 31).unwrap();
        let b = batch(&model, 9, 140);
        let plans = vec![cells(7); 9];
        let mut e = engine(&model);
        let g = e.evaluate(&b, &plans).unwrap();
        let labels = e.dispatch_labels();
        let folded = labels.iter().any(|l| l.contains("path ends"));
        assert_eq!(folded, folds, "{arch}: {labels:?}");
        assert_eq!(labels.iter().any(|l| l == "path"), !folds, "{arch}");
        let c = CpuBackend::new(&model).evaluate(&b, &plans).unwrap();
        let err = rel_l2(&g.attributions, &c.attributions);
        assert!(err < 1e-5, "{arch}: soft GPU vs CPU {err}");
        // The ends are computed with a group's first chunk and serve its later chunks and groups'
        // chunks alike: small chunks and groups give the same numbers.
        let options = EngineOptions {
            max_rows_per_chunk: Some(5),
            max_images_per_group: Some(4),
            ..EngineOptions::default()
        };
        let small = Engine::new(gpu(), &model, options)
            .unwrap()
            .evaluate(&b, &plans)
            .unwrap();
        assert!(
            small.attributions == g.attributions,
            "{arch}: chunked run differs"
        );
        let fs = |e: &gig::backend::Evaluation| -> Vec<f64> {
            e.gradient_f
                .iter()
                .chain(&e.forward_f)
                .flatten()
                .copied()
                .collect()
        };
        for (i, (a, b)) in fs(&g).iter().zip(&fs(&c)).enumerate() {
            assert!(
                (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                "{arch}: F {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn folded_input_gradients_match_the_cpu_twin() {
    // The first conv's input gradient taken once per image, after the sum over the path (the
    // default without gradient norms): a ReLU between conv and pool or none, strides, several input
    // channels, 3x3 windows, windows that leave rows out; IDG's round (each row weighted by its
    // slope), small chunks and groups, GPU tiles. (Several accumulators:
    // folded_accumulators_are_weighted_before_the_transpose.)
    let methods = [
        Method::Uniform(Rule::GaussLegendre),
        Method::Uniform(Rule::RiemannTrapezoid),
        Method::Idg,
    ];
    for (arch, shape) in [
        (
            "conv(1,4,3,p1) relu maxpool2 conv(4,6,3,p1) relu maxpool2 flatten linear(54,16) relu linear(16,5)",
            [1, 12, 12],
        ),
        (
            "conv(2,3,3,s2,p1) maxpool2 flatten linear(12,3)",
            [2, 10, 10],
        ),
        (
            "conv(3,5,2x3,s1x2,p0x1) relu maxpool3 flatten relu linear(30,4)",
            [3, 10, 12],
        ),
    ] {
        let model = Model::random_from_arch(arch, shape, 41).unwrap();
        let b = batch(&model, 5, 150);
        let settings = Settings {
            steps: 24,
            ..Settings::default()
        };
        let options = |gradient_norms, tiling, rows, images| EngineOptions {
            gradient_norms,
            tiling: Some(tiling),
            max_rows_per_chunk: rows,
            max_images_per_group: images,
            ..EngineOptions::default()
        };
        for method in methods {
            let cpu = method::explain(&mut CpuBackend::new(&model), &b, method, &settings).unwrap();
            let run = |o: EngineOptions| {
                let mut e = Engine::new(gpu(), &model, o).unwrap();
                let labels = e.dispatch_labels();
                let x = method::explain(&mut e, &b, method, &settings).unwrap();
                (x, labels)
            };
            let (norms, labels) = run(options(true, Tiling::CPU, None, None));
            assert!(
                !labels.iter().any(|l| l.contains("path ends")),
                "{labels:?}"
            );
            for (o, what) in [
                (options(false, Tiling::CPU, None, None), "folded"),
                (options(false, Tiling::GPU, None, None), "folded, GPU tiles"),
                (
                    options(false, Tiling::CPU, Some(7), Some(2)),
                    "folded, small chunks",
                ),
            ] {
                let (folded, labels) = run(o);
                assert!(
                    labels.iter().any(|l| l.contains("path ends")),
                    "{arch}: {labels:?}"
                );
                assert!(
                    !labels.iter().any(|l| l.contains("layer 0)")),
                    "{arch}: {labels:?}"
                );
                let err = rel_l2(&folded.values, &cpu.values);
                assert!(err < 1e-5, "{arch}, {method:?}, {what}: vs CPU {err}");
                let err = rel_l2(&folded.values, &norms.values);
                assert!(err < 1e-5, "{arch}, {method:?}, {what}: vs unfolded {err}");
                for (f, c) in folded.images.iter().zip(&cpu.images) {
                    assert!(f.path.grad_norm.iter().all(|n| n.is_nan()));
                    assert_eq!(f.path.slope.len(), c.path.slope.len());
                    for (a, b) in f.path.slope.iter().zip(&c.path.slope) {
                        assert!(
                            (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                            "{arch}, {method:?}, {what}: slope {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}

/// A model whose first conv's filters `shape` makes (each row of 3 taps), with images `image` makes
/// from noise (by index and column), and a zero baseline.
fn shaped(
    model: &Model,
    shape: fn(&mut [f32]),
    image: fn(&[f32], usize, usize) -> f32,
    n: usize,
) -> (Model, Batch) {
    let params = (0..model.layers().len())
        .map(|i| {
            let mut p = model.params(i).cloned()?;
            if i == 0 {
                p.weight.chunks_mut(3).for_each(shape);
            }
            Some(p)
        })
        .collect();
    let model = Model::new(model.layers().to_vec(), model.input_shape(), params).unwrap();
    let [c, h, w] = model.shapes()[0].chw();
    let noise = uniform(n * c * h * w, 0.0, 1.0, 9);
    let inputs = (0..noise.len()).map(|i| image(&noise, i, i % w)).collect();
    let baselines = vec![0.0; noise.len()];
    let targets = (0..n).map(|i| i % model.classes()).collect();
    let batch = Batch::new(&model, inputs, baselines, targets).unwrap();
    (model, batch)
}

/// An architecture, its input shape, how its first conv's filters are shaped and how images are made
/// (see `shaped`).
type Fragile = (
    &'static str,
    [usize; 3],
    fn(&mut [f32]),
    fn(&[f32], usize, usize) -> f32,
);

#[test]
fn checked_winograd_takes_the_direct_kernels_decisions() {
    // Point programs run conv + max-pool blocks by Winograd only where a rounding bound vouches for
    // the pool's winners (Winograd::Safe); elsewhere they sum directly. So the first conv,
    // whose inputs are the same either way, must decide as the direct kernel does: the attributions
    // then differ by rounding only. (Later layers see inputs rounded differently, like PyTorch's.)
    // Unchecked Winograd (Everywhere) decides some of these inputs differently, which shows up in
    // the attributions: the inputs do test the decisions.
    let cases: [Fragile; 2] = [
        // Filters and images mirrored about the axis between columns 6 and 7, so conv outputs there
        // are equal in exact arithmetic and the direct sums add their terms in mirrored order; the
        // pool window over columns 6 and 7 compares them. Bias-free, no ReLU.
        (
            "conv(2,8,3,p1,nobias) maxpool2 relu conv(8,8,3,p1) relu maxpool2 flatten linear(72,4)",
            [2, 14, 14],
            |f| f[2] = f[0],
            |noise, i, x| noise[i - x + x.min(13 - x)],
        ),
        // The same with a ReLU before the pool, and a bias.
        (
            "conv(2,8,3,p1) relu maxpool2 conv(8,8,3,p1) relu maxpool2 flatten linear(72,4)",
            [2, 14, 14],
            |f| f[2] = f[0],
            |noise, i, x| noise[i - x + x.min(13 - x)],
        ),
    ];
    for (arch, shape, filters, image) in cases {
        let model = Model::random_from_arch(arch, shape, 31).unwrap();
        let (model, b) = shaped(&model, filters, image, 4);
        let q = Rule::GaussLegendre.nodes(24).unwrap();
        // With gradient norms: the first conv then runs at every point (by default its outputs
        // along the path are made from its outputs at the ends, maxpool_path.wgsl).
        let run = |winograd, channel_loop, gradient_norms| {
            let options = EngineOptions {
                tiling: Some(Tiling {
                    winograd,
                    winograd_channel_loop: channel_loop,
                    ..Tiling::CPU
                }),
                gradient_norms,
                ..EngineOptions::default()
            };
            let mut e = Engine::new(gpu(), &model, options).unwrap();
            let ig = integrated_gradients(&mut e, &b, &q).unwrap();
            (ig, e.dispatch_labels())
        };
        let (direct, _) = run(gig::gpu::Winograd::Never, true, true);
        let (unchecked, _) = run(gig::gpu::Winograd::Everywhere, true, true);
        let per_image = |ig: &gig::Attribution| -> Vec<Vec<f64>> {
            ig.values.chunks(b.dim).map(|v| v.to_vec()).collect()
        };
        let d = per_image(&direct);
        let worst = |other: &gig::Attribution| {
            per_image(other)
                .iter()
                .zip(&d)
                .map(|(o, d)| rel_l2(o, d))
                .fold(0.0, f64::max)
        };
        let unchecked_err = worst(&unchecked);
        assert!(
            unchecked_err > 1e-4,
            "{arch}: unchecked Winograd vs direct only {unchecked_err}: no fragile decisions"
        );
        // Both forms of the checked kernel: a loop over every output channel, or channel blocks.
        for channel_loop in [true, false] {
            let (checked, labels) = run(gig::gpu::Winograd::Safe, channel_loop, true);
            assert!(
                labels.iter().any(|l| l.contains("winograd_forward")),
                "{arch}: {labels:?}"
            );
            let checked_err = worst(&checked);
            assert!(
                checked_err < 2e-6,
                "{arch} (channel loop {channel_loop}): checked Winograd vs direct {checked_err}"
            );
        }
    }
}

#[test]
fn a_kernel_runs_again_alone_after_an_evaluation() {
    // What benches/kernels.rs times: one dispatch of the last chunk, by itself.
    let model = small_cnn();
    let b = batch(&model, 2, 140);
    let mut e = engine(&model);
    let err = e.rerun_dispatch(0).unwrap_err().to_string();
    assert!(err.contains("evaluation"), "{err}");
    let q = Rule::GaussLegendre.nodes(8).unwrap();
    integrated_gradients(&mut e, &b, &q).unwrap();
    let count = e.dispatch_labels().len();
    for i in 0..count {
        e.rerun_dispatch(i).unwrap();
    }
    let err = e.rerun_dispatch(count).unwrap_err().to_string();
    assert!(
        err.contains(&format!("dispatch {count} does not exist")),
        "{err}"
    );
}

#[test]
fn linear_kernels_fitted_to_small_chunks_give_the_same_bits() {
    // A chunk with fewer rows than a linear workgroup holds (8 lanes of 8 rows) runs a variant with
    // fewer rows per lane; each row's sums are the same, so the attributions are bit for bit those
    // of the full kernels, for points and soft cells, from 1 row per lane (small chunks) to 7.
    let model = Model::random_from_arch(
        "conv(1,4,3,p1) relu maxpool2 flatten linear(144,12) relu linear(12,5)",
        [1, 12, 12],
        7,
    )
    .unwrap();
    let b = batch(&model, 2, 90);
    let cpu = CpuBackend::new(&model)
        .evaluate(&b, &[cells(9), cells(9)])
        .unwrap();
    for rows in [None, Some(5), Some(13)] {
        let run = |fit_lane_rows, plans: &[gig::schedule::PathPlan]| {
            let options = EngineOptions {
                tiling: Some(Tiling {
                    fit_lane_rows,
                    ..Tiling::CPU
                }),
                max_rows_per_chunk: rows,
                ..EngineOptions::default()
            };
            let mut e = Engine::new(gpu(), &model, options).unwrap();
            e.evaluate(&b, plans).unwrap().attributions
        };
        for plans in [
            vec![
                gig::schedule::PathPlan::new(
                    Rule::GaussLegendre.nodes(25).unwrap(),
                    vec![0.0, 1.0]
                );
                2
            ],
            vec![cells(9), cells(9)],
        ] {
            let (fitted, full) = (run(true, &plans), run(false, &plans));
            assert_eq!(fitted, full, "chunks of {rows:?} rows");
        }
        let err = rel_l2(&run(true, &[cells(9), cells(9)]), &cpu.attributions);
        assert!(err < 1e-5, "chunks of {rows:?} rows: soft GPU vs CPU {err}");
    }
}
