//! `gig eval-attr`: faithfulness metrics ([`gig::metrics`]) of attribution methods on images of a data set,
//! as a table of methods x metrics, a JSON line and a CSV of every image's scores.

use super::{DataArgs, DeviceArgs, load_model};
use gig::backend::Batch;
use gig::data::{Dataset, Split};
use gig::ig::argmax;
use gig::method::Settings;
use gig::metrics::{self, Attributor, Metric, MetricConfig, Score, Scores};
use gig::{Baseline, Error, Result, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Model file
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// How many images of the split to score, from its start
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Comma-separated methods, each NAME or NAME:STEPS (gausslegendre, riemann_middle, .., adaptive,
    /// split, idg) and `random`, the random-attribution baseline
    #[arg(long, default_value = "gausslegendre,random")]
    methods: String,
    /// Comma-separated: deletion, insertion, infidelity, sensitivity, completeness
    #[arg(
        long,
        default_value = "deletion,insertion,infidelity,sensitivity,completeness"
    )]
    metrics: String,
    /// Gradient evaluations per image (budget for adaptive, split, idg) where a method names none
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// The attribution baseline: zero, a constant VALUE, blur[:SIGMA] or noise[:SEED]
    #[arg(long, default_value = "zero")]
    baseline: String,
    /// Deletion and insertion: steps from all to none of the pixels
    #[arg(long, default_value_t = 28)]
    curve_steps: usize,
    /// Infidelity: perturbations per image
    #[arg(long, default_value_t = 10)]
    infidelity_samples: usize,
    /// Infidelity: standard deviation of the Gaussian noise
    #[arg(long, default_value_t = 0.1)]
    infidelity_sigma: f64,
    /// Sensitivity: perturbed copies per image
    #[arg(long, default_value_t = 10)]
    sensitivity_samples: usize,
    /// Sensitivity: the noise is uniform in [-R, R] per value
    #[arg(long, default_value_t = 0.02)]
    sensitivity_radius: f64,
    /// Seeds the noise and the random baseline
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images scored together (the perturbed images of a batch go through the model as one batch)
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Print one final JSON line with the results instead of the table
    #[arg(long)]
    json: bool,
    /// Write every image's scores, one row per method and image
    #[arg(long)]
    csv: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let defaults = Settings {
        steps: args.steps,
        ..Settings::default()
    };
    if args.steps == 0 {
        return Err(Error::Input("--steps must be at least 1".into()));
    }
    let attributors: Vec<Attributor> = args
        .methods
        .split(',')
        .map(|m| Attributor::parse(m.trim(), &defaults))
        .collect::<Result<_>>()?;
    let config = MetricConfig {
        metrics: Metric::parse_list(&args.metrics)?,
        curve_steps: args.curve_steps,
        infidelity_samples: args.infidelity_samples,
        infidelity_sigma: args.infidelity_sigma,
        sensitivity_samples: args.sensitivity_samples,
        sensitivity_radius: args.sensitivity_radius,
        seed: args.seed,
    };
    config.check()?;
    let baseline = Baseline::parse(&args.baseline)?;
    if args.count == 0 {
        return Err(Error::Input("--count must be at least 1".into()));
    }
    if args.batch == 0 {
        return Err(Error::Input("--batch must be at least 1".into()));
    }
    let model = load_model(&args.model)?;
    let data = args.data.load()?;
    if args.count > data.len() {
        return Err(Error::Input(format!(
            "--count {} is more than the {} images of the {} split",
            args.count,
            data.len(),
            split_name(args.data.split)
        )));
    }
    if data.shape != model.input_shape() {
        return Err(Error::Input(format!(
            "the data holds images of shape {:?} but the model takes {:?}",
            data.shape,
            model.input_shape()
        )));
    }
    let data = data.select(&(0..args.count).collect::<Vec<_>>());
    // Points: each method's paths, and the curves' perturbed images.
    let rows = args.count * attributors.len() * (args.steps + 2 * args.curve_steps);
    let mut backend = args.device.backend(&model, rows)?;
    let device = backend.device();
    // Explain the model's decision, right or wrong: the label is in the CSV beside it.
    let targets: Vec<usize> = backend
        .logits(&data.images)?
        .iter()
        .map(|l| argmax(l))
        .collect();
    let [c, h, w] = data.shape;
    let baselines = baseline
        .make(&Tensor::new(
            vec![data.len(), c, h, w],
            data.images.clone(),
        )?)?
        .data;

    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new((data.len() * attributors.len()) as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:30}] {pos}/{len} image-methods, {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let dim = model.input_len();
    let mut scores: Vec<Vec<Scores>> = vec![Vec::new(); attributors.len()];
    let indices: Vec<usize> = (0..data.len()).collect();
    for group in indices.chunks(args.batch) {
        let span = group[0] * dim..(group[group.len() - 1] + 1) * dim;
        let batch = Batch::new(
            &model,
            data.images[span.clone()].to_vec(),
            baselines[span].to_vec(),
            group.iter().map(|&i| targets[i]).collect(),
        )?;
        let ids: Vec<u64> = group.iter().map(|&i| i as u64).collect();
        for (a, out) in attributors.iter().zip(&mut scores) {
            bar.set_message(a.name());
            out.extend(metrics::evaluate(
                backend.as_mut(),
                &batch,
                &ids,
                a,
                &config,
            )?);
            bar.inc(group.len() as u64);
        }
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let columns = Score::of(&config.metrics);

    if let Some(path) = &args.csv {
        write_csv(path, &attributors, &scores, &columns, &data, &targets)?;
    }
    if args.json {
        let results: Vec<Value> = attributors
            .iter()
            .zip(&scores)
            .map(|(a, s)| {
                let mut by_score = serde_json::Map::new();
                for &col in &columns {
                    let v = match metrics::summary(s, col) {
                        Some((mean, median)) => json!({"mean": mean, "median": median}),
                        None => Value::Null,
                    };
                    by_score.insert(col.name(), v);
                }
                json!({"method": a.name(), "steps": a.steps(), "scores": by_score})
            })
            .collect();
        let line = json!({
            "count": data.len(),
            "split": split_name(args.data.split),
            "target": "predicted",
            "baseline": args.baseline,
            "device": device,
            "seconds": seconds,
            "config": {
                "curve_steps": config.curve_steps,
                "infidelity_samples": config.infidelity_samples,
                "infidelity_sigma": config.infidelity_sigma,
                "sensitivity_samples": config.sensitivity_samples,
                "sensitivity_radius": config.sensitivity_radius,
                "seed": config.seed,
            },
            "results": results,
        });
        println!("{line}");
        return Ok(());
    }
    println!(
        "{} {} images of {} (target: predicted class), baseline {}, on {device}, {seconds:.1} s",
        data.len(),
        split_name(args.data.split),
        args.data.data.display(),
        args.baseline
    );
    println!(
        "mean (median) over images; lower is better except insertion{}",
        if attributors.contains(&Attributor::Random) {
            "; random: uniform random attributions"
        } else {
            ""
        }
    );
    print_table(&attributors, &scores, &columns);
    Ok(())
}

fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "test",
        Split::All => "all",
    }
}

fn label(a: &Attributor) -> String {
    match a.steps() {
        Some(s) => format!("{}:{s}", a.name()),
        None => a.name().to_string(),
    }
}

fn print_table(attributors: &[Attributor], scores: &[Vec<Scores>], columns: &[Score]) {
    let cell = |v: Option<(f64, f64)>| match v {
        Some((mean, median)) => format!("{} ({})", number(mean), number(median)),
        None => "-".into(),
    };
    let mut rows: Vec<Vec<String>> = vec![
        std::iter::once("method".to_string())
            .chain(columns.iter().map(|c| c.name()))
            .collect(),
    ];
    for (a, s) in attributors.iter().zip(scores) {
        rows.push(
            std::iter::once(label(a))
                .chain(columns.iter().map(|&c| cell(metrics::summary(s, c))))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|k| rows.iter().map(|r| r[k].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(k, (v, w))| {
                if k == 0 {
                    format!("{v:<w$}")
                } else {
                    format!("{v:>w$}")
                }
            })
            .collect();
        println!("{}", line.join("  "));
    }
}

/// Four significant digits, fixed point where that reads well.
fn number(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e4) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn write_csv(
    path: &PathBuf,
    attributors: &[Attributor],
    scores: &[Vec<Scores>],
    columns: &[Score],
    data: &Dataset,
    targets: &[usize],
) -> Result<()> {
    let mut text = String::from("method,steps,image,source_index,label,target");
    for c in columns {
        text.push(',');
        text.push_str(&c.name());
    }
    text.push('\n');
    for (a, per_image) in attributors.iter().zip(scores) {
        let steps = a.steps().map_or(String::new(), |s| s.to_string());
        for (i, s) in per_image.iter().enumerate() {
            text.push_str(&format!(
                "{},{steps},{i},{},{},{}",
                a.name(),
                data.source_index[i],
                data.labels[i],
                targets[i]
            ));
            for &c in columns {
                text.push(',');
                if let Some(v) = s.get(c) {
                    text.push_str(&format!("{v:e}"));
                }
            }
            text.push('\n');
        }
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))
}
