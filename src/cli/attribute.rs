//! `gig attribute`: IG attributions of PNG or .npy inputs, written as .npy, with optional heatmap and JSON.

use super::{DeviceArgs, load_model};
use gig::backend::Batch;
use gig::method::{self, Method, Settings};
use gig::{Baseline, Error, Result, Target, Tensor, heatmap};
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
    /// riemann_left, riemann_right, riemann_middle, riemann_trapezoid, gausslegendre (Captum's rules),
    /// adaptive (probe-shaped soft cells with refinement), split (Split IG) or idg (Integrated Decision
    /// Gradients)
    #[arg(long, default_value = "gausslegendre")]
    method: String,
    /// Gradient evaluations per image; for adaptive, split and idg the budget in gradient-evaluation
    /// equivalents (a forward-only probe point counts 1/3, a soft cell 4/3)
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// adaptive: stop refining once the estimated relative L2 error is below this
    #[arg(long)]
    tolerance: Option<f64>,
    /// split: cut the path where F first reaches F(b) + RATIO (F(x) - F(b)); in (0, 1)
    #[arg(long, default_value_t = 0.9)]
    split_ratio: f64,
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
    let method = Method::parse(&args.method)?;
    let settings = Settings {
        steps: args.steps,
        tolerance: args.tolerance,
        split_ratio: args.split_ratio,
    };
    let target = Target::parse(&args.target)?;
    let baseline = Baseline::parse(&args.baseline)?;
    let model = load_model(&args.model)?;
    let inputs = Tensor::read_images(&args.input, model.input_shape())?;
    let baselines = baseline.make(&inputs)?;
    let n = inputs.shape[0];
    let mut backend = args.device.backend(&model)?;
    let targets = target.resolve(backend.as_mut(), &inputs.data, n)?;
    let batch = Batch::new(&model, inputs.data.clone(), baselines.data, targets)?;
    let ig = method::explain(backend.as_mut(), &batch, method, &settings)?;

    let values: Vec<f32> = ig.values.iter().map(|&v| v as f32).collect();
    Tensor::new(inputs.shape.clone(), values.clone())?.write_npy(&args.out)?;
    if let Some(path) = &args.heatmap {
        heatmap::write(path, &inputs.data, &values, model.input_shape(), 8)?;
    }
    for r in &ig.images {
        if args.json {
            let mut line = serde_json::to_value(r).map_err(|e| Error::Input(e.to_string()))?;
            line["steps"] = json!(args.steps);
            line["run"] = json!(ig.stats);
            println!("{line}");
        } else {
            println!(
                "image {}: target {}  F(x) {:.6}  F(b) {:.6}  sum {:.6}  {} {:.6}  delta {:.3e}  ({} gradient + {} forward evaluations{})",
                r.image,
                r.target,
                r.f_input,
                r.f_baseline,
                r.attribution_sum,
                r.completeness,
                r.expected_sum,
                r.delta,
                r.gradient_evaluations,
                r.forward_evaluations,
                r.error_estimate
                    .map(|e| format!(", error estimate {e:.2e}"))
                    .unwrap_or_default()
            );
            if let Some(s) = &r.split {
                println!(
                    "  split at alpha {:.4} (F {:.6}): left sum {:.6}, right sum {:.6}, left + right - (F(x) - F(b)) {:.3e}",
                    s.alpha, s.f_cut, s.left_sum, s.right_sum, s.total_delta
                );
            }
        }
    }
    if !args.json {
        let s = &ig.stats;
        println!(
            "{} {} steps on {} ({}): {} chunk(s), {} dispatches, {} submission(s), {} readback(s); wrote {}",
            method.name(),
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
