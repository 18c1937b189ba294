//! `gig attribute`: IG attributions of PNG or .npy inputs, written as .npy, with optional heatmap and JSON.

use super::{DeviceArgs, load_model};
use gig::backend::Batch;
use gig::method::{self, Explanation, Method, Settings};
use gig::visualize::{self, GridRow, Panel, Sign, Style, VisualMethod};
use gig::{Baseline, Error, Result, Target, Tensor, plot};
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
    /// adaptive (soft cells with refinement rounds), split (Split IG) or idg (Integrated Decision
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
    /// Write a heatmap grid PNG: per image a row with the input and its maps (see --visual)
    #[arg(long)]
    heatmap: Option<PathBuf>,
    /// The maps of each heatmap row, any of heat_map, blended_heat_map, masked_image, alpha_scaling
    #[arg(
        long,
        value_delimiter = ',',
        requires = "heatmap",
        default_value = "heat_map,blended_heat_map,masked_image"
    )]
    visual: Vec<String>,
    /// The attributions the maps show: all, positive, negative or absolute_value [default: all for
    /// heat_map and blended_heat_map, absolute_value for masked_image and alpha_scaling]
    #[arg(long, requires = "heatmap")]
    sign: Option<String>,
    /// Percent of the attribution mass that saturates the maps (Captum's outlier_perc)
    #[arg(long, requires = "heatmap", default_value_t = gig::heatmap::OUTLIER_PERCENT)]
    outlier_percent: f64,
    /// Opacity of blended_heat_map's colours over the grey input
    #[arg(long, requires = "heatmap", default_value_t = 0.5)]
    blend_alpha: f32,
    /// Draw a colour bar, in attribution units, under every map
    #[arg(long, requires = "heatmap")]
    colorbar: bool,
    /// Pixels per input pixel in the heatmap
    #[arg(long, requires = "heatmap", default_value_t = 8)]
    heatmap_scale: u32,
    /// Also attribute with these methods (same steps and settings) and give each its heatmap columns;
    /// the .npy stays the --method one
    #[arg(long, value_delimiter = ',', requires = "heatmap")]
    compare: Vec<String>,
    /// Write a plot of F and |dF/dx| along the path with the gradient alphas, one panel per image (.png
    /// or .svg)
    #[arg(long)]
    path_plot: Option<PathBuf>,
    /// Print one JSON object per image with its diagnostics
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(mut args: Args) -> Result<()> {
    // The path plot shows |dF/dx| along the path.
    args.device.gradient_norms |= args.path_plot.is_some();
    let method = Method::parse(&args.method)?;
    let mut compare: Vec<Method> = Vec::new();
    for name in &args.compare {
        let m = Method::parse(name.trim())?;
        if !compare.contains(&m) {
            compare.push(m);
        }
    }
    let style = Style {
        outlier_percent: args.outlier_percent,
        blend_alpha: args.blend_alpha,
        colorbar: args.colorbar,
        scale: args.heatmap_scale,
        ..Style::default()
    };
    let visuals = visuals(&args.visual, args.sign.as_deref(), &style)?;
    if let Some(path) = &args.path_plot {
        plot::check_extension(path)?;
    }
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
    let mut backend = args.device.backend(&model, n * args.steps)?;
    let targets = target.resolve(backend.as_mut(), &inputs.data, n)?;
    let batch = Batch::new(&model, inputs.data.clone(), baselines.data, targets)?;
    let ig = method::explain(backend.as_mut(), &batch, method, &settings)?;

    let values: Vec<f32> = ig.values.iter().map(|&v| v as f32).collect();
    Tensor::new(inputs.shape.clone(), values.clone())?.write_npy(&args.out)?;
    if let Some(path) = &args.heatmap {
        // --method's own run is reused, not repeated.
        let columns: Vec<(Method, Explanation)> = if compare.is_empty() {
            vec![(method, ig.clone())]
        } else {
            compare
                .iter()
                .map(|&m| {
                    let run = if m == method {
                        ig.clone()
                    } else {
                        method::explain(backend.as_mut(), &batch, m, &settings)?
                    };
                    Ok((m, run))
                })
                .collect::<Result<_>>()?
        };
        let names: Vec<String> = if args.input.len() == n {
            args.input
                .iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into())
                .collect()
        } else {
            (0..n).map(|i| format!("image {i}")).collect()
        };
        let rows = grid_rows(&inputs, &names, &ig, &columns, &visuals);
        visualize::write_png(&visualize::grid(&rows, &style)?, path)?;
    }
    if let Some(path) = &args.path_plot {
        plot::path_plot(path, &ig.images)?;
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

/// The (visual method, sign) of each map in a heatmap row; without --sign each method's own default.
fn visuals(
    names: &[String],
    sign: Option<&str>,
    style: &Style,
) -> Result<Vec<(VisualMethod, Sign)>> {
    let sign = sign.map(Sign::parse).transpose()?;
    names
        .iter()
        .map(|name| {
            let visual = VisualMethod::parse(name.trim())?;
            let sign = sign.unwrap_or(visual.default_sign());
            Style {
                method: visual,
                sign,
                ..*style
            }
            .check()?;
            Ok((visual, sign))
        })
        .collect()
}

/// Per image: its input, titled with its name and target, then for each method (column group) one
/// panel per visual.
fn grid_rows(
    inputs: &Tensor,
    names: &[String],
    ig: &Explanation,
    columns: &[(Method, Explanation)],
    visuals: &[(VisualMethod, Sign)],
) -> Vec<GridRow> {
    let shape = [inputs.shape[1], inputs.shape[2], inputs.shape[3]];
    let dim = shape.iter().product::<usize>();
    (0..inputs.shape[0])
        .map(|i| {
            let mut panels = Vec::new();
            for (m, e) in columns {
                let map: Vec<f32> = e.values[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                for &(visual, sign) in visuals {
                    panels.push(Panel {
                        title: format!("{}\n{}, {}", m.name(), visual.label(), sign.label()),
                        attribution: map.clone(),
                        method: visual,
                        sign,
                    });
                }
            }
            GridRow {
                title: format!("{}\ntarget {}", names[i], ig.images[i].target),
                input: inputs.data[i * dim..(i + 1) * dim].to_vec(),
                shape,
                panels,
            }
        })
        .collect()
}
