//! `gig study`: the error of every method against exact IG as a function of the budget, on held-out
//! images, as a table, JSON lines, CSV and a log-log plot.

use super::{DataArgs, DeviceArgs, load_model};
use gig::backend::Batch;
use gig::method::Method;
use gig::study::{self, Row};
use gig::{Baseline, Error, Result, Target, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Model file
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Images of the split to study (its first COUNT)
    #[arg(long, default_value_t = 32)]
    count: usize,
    /// Budgets (--steps) to try
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256,512")]
    budgets: Vec<usize>,
    /// Methods to compare (IG estimates only: split and idg estimate other quantities)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "riemann_left,riemann_right,riemann_middle,riemann_trapezoid,gausslegendre,adaptive"
    )]
    methods: Vec<String>,
    /// Class to explain: K, K1,K2,.. or predicted
    #[arg(long, default_value = "predicted")]
    target: String,
    /// zero, a constant VALUE, blur[:SIGMA], noise[:SEED] or FILE.npy
    #[arg(long, default_value = "zero")]
    baseline: String,
    /// The median relative error whose cheapest budget per method is reported
    #[arg(long, default_value_t = 4e-4)]
    goal: f64,
    /// Keep the exact reference in this .npy file: computed and written if it does not exist, else read
    /// (it must hold COUNT images of the model's input shape, for the same split, targets and baseline)
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Write the rows as CSV
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Plot median error against budget (PNG or SVG)
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print one JSON object per row, then a summary line
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let methods: Vec<Method> = args
        .methods
        .iter()
        .map(|m| Method::parse(m))
        .collect::<Result<_>>()?;
    if let Some(m) = methods
        .iter()
        .find(|m| matches!(m, Method::Split | Method::Idg))
    {
        return Err(Error::Input(format!(
            "{} does not estimate IG, so it has no error against it; study the IG methods",
            m.name()
        )));
    }
    if args.budgets.is_empty() || args.budgets.contains(&0) {
        return Err(Error::Input("--budgets must be positive numbers".into()));
    }
    let model = load_model(&args.model)?;
    let data = args.data.load()?;
    if args.count == 0 || args.count > data.len() {
        return Err(Error::Input(format!(
            "--count {} must be between 1 and the {} images of the split",
            args.count,
            data.len()
        )));
    }
    let data = data.select(&(0..args.count).collect::<Vec<_>>());
    let inputs = Tensor::new(
        vec![data.len(), data.shape[0], data.shape[1], data.shape[2]],
        data.images.clone(),
    )?;
    let baselines = Baseline::parse(&args.baseline)?.make(&inputs)?;
    let rows = args.count * methods.len() * args.budgets.iter().sum::<usize>();
    let mut backend = args.device.backend(&model, rows)?;
    let targets =
        Target::parse(&args.target)?.resolve(backend.as_mut(), &inputs.data, data.len())?;
    let batch = Batch::new(&model, inputs.data.clone(), baselines.data, targets)?;

    let (reference, pieces) = match &args.reference {
        Some(path) if path.exists() => {
            let t = Tensor::read_npy(path)?;
            if t.data.len() != batch.inputs.len() {
                return Err(Error::Input(format!(
                    "{}: holds {} values, but {} images of shape {:?} need {}",
                    path.display(),
                    t.data.len(),
                    batch.len(),
                    model.input_shape(),
                    batch.inputs.len()
                )));
            }
            (t.data.iter().map(|&v| f64::from(v)).collect(), Vec::new())
        }
        _ => {
            let bar = progress(args.json, batch.len() as u64, "exact IG (CPU, f64)");
            let start = std::time::Instant::now();
            let (reference, pieces) = study::exact_reference(&model, &batch, || bar.inc(1))?;
            bar.finish_and_clear();
            let mut sorted = pieces.clone();
            sorted.sort_unstable();
            if !args.json {
                println!(
                    "exact IG of {} images in {:.1} s: {} to {} linear pieces per path (median {})",
                    batch.len(),
                    start.elapsed().as_secs_f64(),
                    sorted[0],
                    sorted[sorted.len() - 1],
                    sorted[sorted.len() / 2]
                );
            }
            if let Some(path) = &args.reference {
                let values = reference.iter().map(|&v| v as f32).collect();
                Tensor::new(inputs.shape.clone(), values)?.write_npy(path)?;
            }
            (reference, pieces)
        }
    };
    if !args.json {
        println!(
            "{:>18} {:>7} {:>11} {:>11} {:>8} {:>9}",
            "method", "budget", "median", "max", "spent", "seconds"
        );
    }
    let bar = progress(
        args.json,
        (methods.len() * args.budgets.len()) as u64,
        "methods x budgets",
    );
    let rows = study::run(
        backend.as_mut(),
        &batch,
        &reference,
        &methods,
        &args.budgets,
        |r| {
            bar.inc(1);
            if args.json {
                println!("{}", serde_json::to_string(r).unwrap());
            } else {
                bar.suspend(|| {
                    println!(
                        "{:>18} {:>7} {:>11.3e} {:>11.3e} {:>8.1} {:>9.3}",
                        r.method, r.budget, r.median, r.max, r.spent, r.seconds
                    )
                });
            }
        },
    )?;
    bar.finish_and_clear();

    let best = study::cheapest(&rows, args.goal);
    if args.json {
        let line = serde_json::json!({
            "images": batch.len(),
            "device": backend.device(),
            "goal": args.goal,
            "cheapest": best,
            "pieces": pieces,
        });
        println!("{line}");
    } else {
        println!(
            "cheapest budget with median error <= {:.1e} on {}:",
            args.goal,
            backend.device()
        );
        for r in &best {
            println!(
                "  {:>18}: budget {:>4}, {:.3} s for {} images",
                r.method, r.budget, r.seconds, r.images
            );
        }
    }
    if let Some(path) = &args.csv {
        write_csv(path, &rows)?;
    }
    if let Some(path) = &args.plot {
        gig::plot::study_plot(path, &rows, args.goal, batch.len())?;
    }
    Ok(())
}

fn progress(hidden: bool, len: u64, what: &str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} {elapsed}").unwrap());
    bar.set_message(what.to_string());
    bar
}

fn write_csv(path: &Path, rows: &[Row]) -> Result<()> {
    let mut text = String::from("method,budget,median,max,spent,seconds,images\n");
    for r in rows {
        text += &format!(
            "{},{},{:e},{:e},{},{},{}\n",
            r.method, r.budget, r.median, r.max, r.spent, r.seconds, r.images
        );
    }
    std::fs::write(path, text)
        .map_err(|e| Error::Input(format!("{}: cannot write ({e})", path.display())))
}
