//! `gig attribute`: IG attributions of PNG or .npy inputs, written as .npy, with optional heatmap and JSON.

use super::{DeviceArgs, load_model};
use gig::backend::Batch;
use gig::quadrature::Rule;
use gig::{Baseline, Error, Result, Target, Tensor, heatmap, integrated_gradients};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (.safetensors with gig metadata; see README)
    #[arg(long)]
    model: PathBuf,
    /// Input images: PNG files (grey or RGB, scaled to [0, 1]) or one .npy float array [N,C,H,W] or [C,H,W]
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// Where to write the attributions (float32 .npy of the input's shape)
    #[arg(long)]
    out: PathBuf,
    /// Class to explain: K (all images), K1,K2,.. (one per image) or predicted
    #[arg(long, default_value = "predicted")]
    target: String,
    /// zero, a constant VALUE, blur[:SIGMA], noise[:SEED] or FILE.npy
    #[arg(long, default_value = "zero")]
    baseline: String,
    /// riemann_left, riemann_right, riemann_middle, riemann_trapezoid or gausslegendre
    #[arg(long, default_value = "gausslegendre")]
    method: String,
    /// Gradient evaluations per image
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Write a signed heatmap PNG (input beside its attribution map, one row per image)
    #[arg(long)]
    heatmap: Option<PathBuf>,
    /// Print one JSON object per image with its diagnostics
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let rule = Rule::parse(&args.method)?;
    let quadrature = rule.nodes(args.steps)?;
    let target = Target::parse(&args.target)?;
    let baseline = Baseline::parse(&args.baseline)?;
    let model = load_model(&args.model)?;
    let inputs = Tensor::read_images(&args.input, model.input_shape())?;
    let baselines = baseline.make(&inputs)?;
    let n = inputs.shape[0];
    let mut backend = args.device.backend(&model)?;
    let targets = target.resolve(backend.as_mut(), &inputs.data, n)?;
    let batch = Batch::new(&model, inputs.data.clone(), baselines.data, targets)?;
    let ig = integrated_gradients(backend.as_mut(), &batch, &quadrature)?;

    let values: Vec<f32> = ig.values.iter().map(|&v| v as f32).collect();
    Tensor::new(inputs.shape.clone(), values.clone())?.write_npy(&args.out)?;
    if let Some(path) = &args.heatmap {
        heatmap::write(path, &inputs.data, &values, model.input_shape(), 8)?;
    }
    for r in &ig.images {
        if args.json {
            let line = json!({
                "image": r.image,
                "target": r.target,
                "method": rule.name(),
                "steps": args.steps,
                "f_input": r.f_input,
                "f_baseline": r.f_baseline,
                "attribution_sum": r.attribution_sum,
                "delta": r.delta,
                "path": r.path,
                "run": ig.stats,
            });
            println!("{line}");
        } else {
            println!(
                "image {}: target {}  F(x) {:.6}  F(b) {:.6}  sum {:.6}  delta {:.3e}",
                r.image, r.target, r.f_input, r.f_baseline, r.attribution_sum, r.delta
            );
        }
    }
    if !args.json {
        let s = &ig.stats;
        println!(
            "{} {} steps on {} ({}): {} chunk(s), {} dispatches, {} submission(s), {} readback(s); wrote {}",
            rule.name(),
            args.steps,
            s.device,
            s.backend,
            s.chunks,
            s.dispatches,
            s.submissions,
            s.readbacks,
            args.out.display()
        );
    }
    if ig.values.iter().any(|v| !v.is_finite()) {
        return Err(Error::Gpu(
            "the attributions contain NaN or infinity".into(),
        ));
    }
    Ok(())
}
