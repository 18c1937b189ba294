//! `gig bench`: timed attributions of a batch, with per-kernel GPU times from timestamp queries.

use super::{DeviceArgs, load_model};
use gig::gpu::{Engine, Gpu, KernelTime};
use gig::method::{self, Method, Settings};
use gig::{Backend, Batch, CpuBackend, Result, Target, Tensor};
use rand::{RngExt, SeedableRng};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Model file
    #[arg(long)]
    model: PathBuf,
    /// Gradient evaluations per image
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Images per attribution
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Method, as for gig attribute (a uniform rule, adaptive, split or idg)
    #[arg(long, default_value = "gausslegendre")]
    method: String,
    /// Timed attributions (after one warm-up)
    #[arg(long, default_value_t = 10)]
    repeat: usize,
    /// Print one final JSON line with the results
    #[arg(long)]
    json: bool,
    /// Time training steps (Adam, softmax cross-entropy, batch --batch) instead of attributions
    #[arg(long)]
    train: bool,
    /// Attribute these images (PNG files or one .npy, as for gig attribute; repeated to fill --batch)
    /// for their predicted classes, instead of uniform random images for classes 0, 1, 2, ...
    /// Adaptive methods place their steps by the images, so their cost depends on them.
    #[arg(long, num_args = 1..)]
    input: Vec<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.train {
        if !args.input.is_empty() {
            return Err(gig::Error::Input(
                "--input is for attributions; --train times steps on random images".into(),
            ));
        }
        return run_train(args);
    }
    let model = load_model(&args.model)?;
    let method = Method::parse(&args.method)?;
    let settings = Settings {
        steps: args.steps,
        ..Settings::default()
    };
    if args.batch == 0 || args.repeat == 0 {
        return Err(gig::Error::Input(
            "--batch and --repeat must be at least 1".into(),
        ));
    }
    let dim = model.input_len();
    let mut engine = None;
    let mut backend: Box<dyn Backend> = if args.device.is_cpu() {
        Box::new(CpuBackend::new(&model))
    } else {
        let gpu = Gpu::new(&args.device.gpu_options())?;
        let options = args.device.engine_options(&gpu, None);
        engine = Some(Engine::new(&gpu, &model, options.clone())?);
        Box::new(Engine::new(&gpu, &model, options)?)
    };
    let (inputs, targets) = if args.input.is_empty() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let inputs: Vec<f32> = (0..args.batch * dim).map(|_| rng.random::<f32>()).collect();
        (
            inputs,
            (0..args.batch).map(|i| i % model.classes()).collect(),
        )
    } else {
        let images = Tensor::read_images(&args.input, model.input_shape())?;
        let inputs: Vec<f32> = images
            .data
            .iter()
            .copied()
            .cycle()
            .take(args.batch * dim)
            .collect();
        let targets = Target::Predicted.resolve(backend.as_mut(), &inputs, args.batch)?;
        (inputs, targets)
    };
    let batch = Batch::new(&model, inputs, vec![0.0; args.batch * dim], targets)?;

    let warm = method::explain(backend.as_mut(), &batch, method, &settings)?;
    let mut times = Vec::with_capacity(args.repeat);
    for _ in 0..args.repeat {
        let t = Instant::now();
        method::explain(backend.as_mut(), &batch, method, &settings)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let (min, max) = (
        times.iter().copied().fold(f64::MAX, f64::min),
        times.iter().copied().fold(0.0, f64::max),
    );
    let med = median(&mut times);
    // images x steps for a uniform rule; for the others the points (cells) they evaluated.
    let evaluations: f64 = warm
        .images
        .iter()
        .map(|r| r.gradient_evaluations as f64)
        .sum();

    // Then attributions on a second engine with every dispatch timed: per kernel, the median over runs.
    let mut kernels: Vec<KernelTime> = Vec::new();
    let mut gpu_seconds = 0.0;
    let mut flops_per_evaluation = None;
    let mut bytes_per_evaluation = None;
    if let Some(e) = engine.as_mut() {
        flops_per_evaluation = Some(e.flops_per_evaluation());
        bytes_per_evaluation = Some(e.bytes_per_evaluation());
        method::explain(e, &batch, method, &settings)?;
        let mut runs: Vec<Vec<KernelTime>> = Vec::new();
        for _ in 0..args.repeat.min(5) {
            if e.start_profiling().is_err() {
                break;
            }
            method::explain(e, &batch, method, &settings)?;
            runs.extend(e.take_profile());
        }
        if let Some(first) = runs.first() {
            let mut totals: Vec<f64> = runs
                .iter()
                .map(|r| r.iter().map(|k| k.seconds).sum())
                .collect();
            gpu_seconds = median(&mut totals);
            kernels = first.clone();
            for (i, k) in kernels.iter_mut().enumerate() {
                k.seconds = median(&mut runs.iter().map(|r| r[i].seconds).collect::<Vec<_>>());
            }
        }
    }
    let gflops = flops_per_evaluation.map(|f| f * evaluations / med / 1e9);
    let s = &warm.stats;

    if args.json {
        let line = json!({
            "adapter": s.device,
            "backend": s.backend,
            "model": args.model.display().to_string(),
            "method": args.method,
            "steps": args.steps,
            "batch": args.batch,
            "repeat": args.repeat,
            "wall_s": {"median": med, "min": min, "max": max},
            "images_per_s": args.batch as f64 / med,
            "gradient_evaluations_per_s": evaluations / med,
            "gflops_per_s": gflops,
            "flops_per_evaluation": flops_per_evaluation,
            "bytes_per_evaluation": bytes_per_evaluation,
            "dispatches_per_attribution": s.dispatches,
            "submissions_per_attribution": s.submissions,
            "chunks": s.chunks,
            "gpu_seconds_per_attribution": (!kernels.is_empty()).then_some(gpu_seconds),
            "kernels": kernels,
        });
        println!("{line}");
        return Ok(());
    }
    println!("adapter: {} ({})", s.device, s.backend);
    println!(
        "{} steps x {} image(s) ({}), {} timed run(s) after a warm-up",
        args.steps, args.batch, args.method, args.repeat
    );
    println!(
        "wall per attribution: median {:.3} ms, min {:.3} ms, max {:.3} ms",
        med * 1e3,
        min * 1e3,
        max * 1e3
    );
    println!("images/s: {:.1}", args.batch as f64 / med);
    println!("gradient evaluations/s: {:.1}", evaluations / med);
    if let (Some(f), Some(g)) = (flops_per_evaluation, gflops) {
        println!(
            "FLOPs per evaluation: {:.3} M; achieved {g:.2} GFLOP/s",
            f / 1e6
        );
    }
    println!(
        "per attribution: {} dispatches, {} submission(s), {} chunk(s)",
        s.dispatches, s.submissions, s.chunks
    );
    if !kernels.is_empty() {
        print_kernels(&kernels, gpu_seconds, args.repeat.min(5), "attribution");
    }
    Ok(())
}

/// Per kernel, the median over runs of its time; and the median total.
fn medians(runs: &[Vec<KernelTime>]) -> (Vec<KernelTime>, f64) {
    let Some(first) = runs.first() else {
        return (Vec::new(), 0.0);
    };
    let mut totals: Vec<f64> = runs
        .iter()
        .map(|r| r.iter().map(|k| k.seconds).sum())
        .collect();
    let mut kernels = first.clone();
    for (i, k) in kernels.iter_mut().enumerate() {
        k.seconds = median(&mut runs.iter().map(|r| r[i].seconds).collect::<Vec<_>>());
    }
    (kernels, median(&mut totals))
}

fn print_kernels(kernels: &[KernelTime], total: f64, runs: usize, what: &str) {
    println!(
        "GPU time per {what} (timestamps, one pass per dispatch; medians of {runs} runs): {:.3} ms",
        total * 1e3
    );
    for k in kernels {
        let rate = if k.seconds > 0.0 && k.flops > 0.0 {
            format!("{:8.2} GFLOP/s", k.flops / k.seconds / 1e9)
        } else {
            String::new()
        };
        let share = 100.0 * k.seconds / total;
        println!(
            "  {:36} {:9.3} ms {share:5.1}% {rate}",
            k.label,
            k.seconds * 1e3
        );
    }
}

/// `gig bench --train`: training steps on random images.
fn run_train(args: Args) -> Result<()> {
    let model = load_model(&args.model)?;
    if args.device.is_cpu() {
        return Err(gig::Error::Input("training runs on the GPU only".into()));
    }
    let dim = model.input_len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let images: Vec<f32> = (0..args.batch * dim).map(|_| rng.random::<f32>()).collect();
    let labels: Vec<u8> = (0..args.batch)
        .map(|i| (i % model.classes()) as u8)
        .collect();
    let gpu = Gpu::new(&args.device.gpu_options())?;
    let mut trainer = gig::gpu::Trainer::new(
        &gpu,
        &model,
        gig::optim::Optimizer::parse("adam")?,
        args.batch,
    )?;
    trainer.step(&images, &labels, 1e-4)?;
    let mut times = Vec::with_capacity(args.repeat);
    for _ in 0..args.repeat {
        let t = Instant::now();
        trainer.step(&images, &labels, 1e-4)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let med = median(&mut times);
    let mut runs = Vec::new();
    for _ in 0..args.repeat.min(5) {
        if trainer.start_profiling().is_err() {
            break;
        }
        trainer.step(&images, &labels, 1e-4)?;
        runs.extend(trainer.take_profile());
    }
    let (kernels, total) = medians(&runs);
    if args.json {
        let line = json!({
            "adapter": gpu.describe(),
            "backend": "gpu",
            "batch": args.batch,
            "step_s": med,
            "images_per_s": args.batch as f64 / med,
            "kernels": kernels,
        });
        println!("{line}");
        return Ok(());
    }
    println!("adapter: {}", gpu.describe());
    println!(
        "training step (Adam), batch {}: median {:.3} ms, {:.1} images/s",
        args.batch,
        med * 1e3,
        args.batch as f64 / med
    );
    if !kernels.is_empty() {
        print_kernels(&kernels, total, runs.len(), "step");
    }
    Ok(())
}
