//! Training: weight gradients on the GPU against the CPU twin and finite differences, one optimizer step
//! against the CPU twin, and short training runs.

mod common;
use common::*;
use gig::gpu::Trainer;
use gig::model::Params;
use gig::ops::Params64;
use gig::optim::Optimizer;
use gig::{Backend, CpuBackend, Model};

/// Every layer kind with weights, fused and not: conv+ReLU+max-pool, strided padded conv without bias,
/// avg-pool, linear+ReLU, the last linear. The first conv's 7 output columns end in a short strip of the
/// weight-gradient kernel.
fn model() -> Model {
    Model::random_from_arch(
        "conv(2,4,3,p1) relu maxpool2 conv(4,5,3,s2,p1,nobias) relu avgpool(2,s1) flatten linear(10,8) relu linear(8,5)",
        [2, 10, 7],
        11,
    )
    .unwrap()
}

fn data(model: &Model, n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let images = uniform(n * model.input_len(), 0.0, 1.0, seed);
    let labels = (0..n).map(|i| (i * 7 % model.classes()) as u8).collect();
    (images, labels)
}

fn flat(p: &Params) -> Vec<f64> {
    p.weight.iter().chain(&p.bias).map(|&v| v as f64).collect()
}

fn flat64(p: &Params64) -> Vec<f64> {
    p.weight.iter().chain(&p.bias).copied().collect()
}

#[test]
fn weight_gradients_match_cpu_twin_and_finite_differences() {
    let model = model();
    let (images, labels) = data(&model, 37, 1);
    let mut trainer = Trainer::new(gpu(), &model, Optimizer::parse("sgd").unwrap(), 64).unwrap();
    let step = trainer.step(&images, &labels, 0.0).unwrap();
    let gpu_grads = trainer.last_gradients().unwrap();
    let cpu = CpuBackend::new(&model);
    let (loss, cpu_grads) = cpu.batch_gradients(&images, &labels);
    assert!(
        (step.loss - loss).abs() < 1e-5 * loss,
        "loss {} vs {loss}",
        step.loss
    );
    for (i, (g, c)) in gpu_grads.iter().zip(&cpu_grads).enumerate() {
        let (Some(g), Some(c)) = (g, c) else {
            assert!(g.is_none() && c.is_none());
            continue;
        };
        let err = rel_l2(&flat(g), &flat64(c));
        assert!(err < 1e-5, "layer {i}: GPU vs CPU weight gradient {err}");
        if c.bias.is_empty() {
            assert!(g.bias.is_empty());
        }
    }
    // The CPU twin against central differences of the loss, for a few weights of every layer.
    for (i, c) in cpu_grads.iter().enumerate() {
        let Some(c) = c else { continue };
        let p = model.params(i).unwrap();
        for k in [0, p.weight.len() / 2, p.weight.len() - 1] {
            let eps = 1e-3;
            let loss_at = |delta: f32| {
                let mut q = p.clone();
                q.weight[k] += delta;
                let mut params: Vec<Option<Params>> = (0..model.layers().len())
                    .map(|j| model.params(j).cloned())
                    .collect();
                params[i] = Some(q);
                let m = Model::new(model.layers().to_vec(), model.input_shape(), params).unwrap();
                CpuBackend::new(&m).batch_gradients(&images, &labels).0
            };
            let fd = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
            let tol = 1e-4 + 1e-3 * fd.abs();
            assert!(
                (fd - c.weight[k]).abs() < tol,
                "layer {i} weight {k}: twin {} vs differences {fd}",
                c.weight[k]
            );
        }
    }
}

#[test]
fn one_optimizer_step_matches_cpu_twin() {
    let model = model();
    let (images, labels) = data(&model, 20, 2);
    for name in ["sgd", "adam"] {
        let opt = Optimizer::parse(name).unwrap();
        let lr = 0.01;
        let mut trainer = Trainer::new(gpu(), &model, opt, 32).unwrap();
        // Two steps, so that momentum and Adam's moments matter.
        trainer.step(&images, &labels, lr).unwrap();
        trainer.step(&images, &labels, lr).unwrap();
        let after = trainer.model().unwrap();

        let mut cpu_model = model.clone();
        let mut state: Vec<Vec<Vec<f64>>> = (0..model.layers().len())
            .map(|i| {
                let len = model.params(i).map_or(0, |p| p.weight.len() + p.bias.len());
                vec![vec![0.0; len]; opt.moments()]
            })
            .collect();
        for t in 1..=2 {
            let (_, grads) = CpuBackend::new(&cpu_model).batch_gradients(&images, &labels);
            let mut params = Vec::new();
            for (i, g) in grads.iter().enumerate() {
                params.push(g.as_ref().map(|g| {
                    let p = cpu_model.params(i).unwrap();
                    let mut v: Vec<f64> =
                        p.weight.iter().chain(&p.bias).map(|&x| x as f64).collect();
                    opt.update(&mut v, &flat64(g), &mut state[i], t, lr);
                    let (w, b) = v.split_at(p.weight.len());
                    Params {
                        weight: w.iter().map(|&x| x as f32).collect(),
                        bias: b.iter().map(|&x| x as f32).collect(),
                    }
                }));
            }
            cpu_model = Model::new(model.layers().to_vec(), model.input_shape(), params).unwrap();
        }
        for i in 0..model.layers().len() {
            let (Some(g), Some(c), Some(before)) =
                (after.params(i), cpu_model.params(i), model.params(i))
            else {
                continue;
            };
            let moved: Vec<f64> = flat(g)
                .iter()
                .zip(flat(before))
                .map(|(a, b)| a - b)
                .collect();
            let want: Vec<f64> = flat(c)
                .iter()
                .zip(flat(before))
                .map(|(a, b)| a - b)
                .collect();
            let err = rel_l2(&moved, &want);
            assert!(
                err < 1e-3,
                "{name} layer {i}: update differs from the CPU twin by {err}"
            );
        }
    }
}

#[test]
fn bad_steps_are_errors() {
    let model = model();
    let mut trainer = Trainer::new(gpu(), &model, Optimizer::parse("adam").unwrap(), 4).unwrap();
    let (images, labels) = data(&model, 5, 3);
    let e = trainer.step(&images, &labels, 0.1).unwrap_err().to_string();
    assert!(e.contains("1 to 4 images"), "{e}");
    let (images, mut labels) = data(&model, 2, 3);
    labels[1] = 9;
    let e = trainer.step(&images, &labels, 0.1).unwrap_err().to_string();
    assert!(e.contains("label 9 is out of range"), "{e}");
}

#[test]
fn a_short_run_on_real_digits_lowers_the_loss() {
    use gig::data::{Dataset, Split};
    use gig::train::{TrainConfig, score, train};
    let data = Dataset::load(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/mnist10k")).unwrap();
    let train_set = data.select(&(0..384).collect::<Vec<_>>());
    let test_set = data
        .split(Split::Test, 2000)
        .unwrap()
        .select(&(0..500).collect::<Vec<_>>());
    let model = Model::random_from_arch(
        "conv(1,8,3,p1) relu maxpool2 flatten linear(1568,10)",
        [1, 28, 28],
        0,
    )
    .unwrap();
    let config = TrainConfig {
        epochs: 3,
        batch: 32,
        lr: 3e-3,
        optimizer: Optimizer::parse("adam").unwrap(),
        seed: 1,
        shift: 1,
        cosine: true,
        progress: false,
    };
    let before = score(&mut engine(&model), &test_set).unwrap().accuracy;
    let (trained, reports) =
        train(gpu(), &model, &train_set, Some(&test_set), &config, |_| {}).unwrap();
    let losses: Vec<f64> = reports.iter().map(|r| r.loss).collect();
    assert!(
        losses[0] < 2.3 && losses[2] < 0.7 * losses[0],
        "losses {losses:?}"
    );
    let after = reports.last().unwrap().test_accuracy.unwrap();
    assert!(
        after > 0.7 && after > before + 0.4,
        "accuracy {before} -> {after}"
    );
    // The written file loads back with the same weights.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trained.safetensors");
    trained.save(&path).unwrap();
    let back = Model::load(&path).unwrap();
    assert_eq!(back.params(4), trained.params(4));
    assert_eq!(
        score(&mut engine(&back), &test_set).unwrap().accuracy,
        after
    );
}

#[test]
fn pytorch_loads_a_model_written_by_gig() {
    // Skipped (passes) where python3 with torch and safetensors is not installed, as in CI.
    let has_torch = std::process::Command::new("python3")
        .args(["-c", "import torch, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_torch {
        eprintln!("skipped: python3 with torch and safetensors is not installed");
        return;
    }
    let model = Model::random_from_arch(
        "conv(1,4,3,p1) relu maxpool2 conv(4,6,3,s2,p1,nobias) relu avgpool(2,s1) flatten linear(24,10)",
        [1, 12, 12],
        5,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, inputs) = (dir.path().join("m.safetensors"), dir.path().join("x.npy"));
    model.save(&path).unwrap();
    let x = uniform(3 * 144, 0.0, 1.0, 9);
    gig::Tensor::new(vec![3, 1, 12, 12], x.clone())
        .unwrap()
        .write_npy(&inputs)
        .unwrap();
    let script = format!(
        "import sys, numpy, torch; sys.path.insert(0, {tools:?}); from export_torch import load\n\
         m, shape = load({path:?}); assert shape == (1, 12, 12)\n\
         x = torch.tensor(numpy.load({inputs:?}))\n\
         print(' '.join(repr(v) for v in m(x).detach().flatten().tolist()))",
        tools = concat!(env!("CARGO_MANIFEST_DIR"), "/tools"),
        path = path.to_str().unwrap(),
        inputs = inputs.to_str().unwrap(),
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let torch: Vec<f64> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let ours: Vec<f64> = CpuBackend::new(&model).logits(&x).unwrap().concat();
    assert!(
        rel_l2(&torch, &ours) < 1e-6,
        "PyTorch and gig disagree on the logits"
    );
}

#[test]
fn training_is_deterministic() {
    let model = model();
    let (images, labels) = data(&model, 24, 4);
    let run = || {
        let mut t = Trainer::new(gpu(), &model, Optimizer::parse("adam").unwrap(), 8).unwrap();
        for b in 0..3 {
            let dim = model.input_len();
            t.step(
                &images[b * 8 * dim..(b + 1) * 8 * dim],
                &labels[b * 8..(b + 1) * 8],
                1e-2,
            )
            .unwrap();
        }
        t.model().unwrap()
    };
    let (a, b) = (run(), run());
    for i in 0..model.layers().len() {
        assert_eq!(
            a.params(i),
            b.params(i),
            "layer {i} differs between identical runs"
        );
    }
}

#[test]
fn winograd_training_follows_the_updated_weights() {
    // The three convs run as Winograd's F(2x2, 3x3) forward (the first and last with their max-pools),
    // the second and third ones' input gradients too, and all three weight gradients as F(3x3, 2x2)
    // (the second one's over the whole plane, the others' through the pools); the transformed weights
    // are made again on the GPU after every step. The second
    // step's gradients must be those at the weights the first step left.
    let model = Model::random_from_arch(
        "conv(1,4,3,p1) relu maxpool2 conv(4,6,3,p1) relu conv(6,6,3,p1) relu maxpool2 flatten linear(24,5)",
        [1, 8, 8],
        17,
    )
    .unwrap();
    let (images, labels) = data(&model, 24, 3);
    for winograd in [gig::gpu::Winograd::Everywhere, gig::gpu::Winograd::Never] {
        let tiling = gig::gpu::Tiling {
            winograd,
            ..gig::gpu::Tiling::CPU
        };
        let opt = Optimizer::parse("sgd").unwrap();
        let mut trainer = Trainer::with_tiling(gpu(), &model, opt, 32, tiling).unwrap();
        // Three forward convs, two input gradients, three weight gradients, three weight transforms.
        let labels_used = trainer.dispatch_labels();
        let used = labels_used
            .iter()
            .filter(|l| l.contains("winograd"))
            .count();
        let expected = if winograd == gig::gpu::Winograd::Never {
            0
        } else {
            11
        };
        assert_eq!(used, expected, "{labels_used:?}");
        trainer.step(&images, &labels, 0.5).unwrap();
        let moved = trainer.model().unwrap();
        trainer.step(&images, &labels, 0.0).unwrap();
        let gpu_grads = trainer.last_gradients().unwrap();
        let (_, cpu_grads) = CpuBackend::new(&moved).batch_gradients(&images, &labels);
        let (_, stale) = CpuBackend::new(&model).batch_gradients(&images, &labels);
        for (i, ((g, c), s)) in gpu_grads.iter().zip(&cpu_grads).zip(&stale).enumerate() {
            let (Some(g), Some(c), Some(s)) = (g, c, s) else {
                continue;
            };
            let err = rel_l2(&flat(g), &flat64(c));
            assert!(err < 1e-4, "{winograd:?} layer {i}: GPU vs CPU {err}");
            // The test can tell: the first step moved the gradients well past that.
            assert!(rel_l2(&flat64(s), &flat64(c)) > 1e-2, "layer {i}");
        }
    }
}
