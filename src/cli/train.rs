//! `gig train` and `gig eval`: train a CNN on the GPU from a data set, and score a model on one.

use super::{DataArgs, DeviceArgs, load_model};
use gig::data::{Dataset, MNIST10K_TEST, Split};
use gig::gpu::Gpu;
use gig::model::{Model, parse_arch, parse_input_shape};
use gig::optim::Optimizer;
use gig::train::{TrainConfig, score, train};
use gig::{Error, Result};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Data set: a folder with IDX files (MNIST layout) or with one folder of PNGs per class
    #[arg(long)]
    data: PathBuf,
    /// Layers, e.g. "conv(1,16,3,p1) relu maxpool2 flatten linear(3136,10)" (grammar in README)
    #[arg(long)]
    arch: String,
    /// Input shape C,H,W (default: the data's)
    #[arg(long)]
    input_shape: Option<String>,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// adam or sgd (momentum 0.9)
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Learning-rate schedule: cosine (to 0 over all steps) or constant
    #[arg(long, default_value = "cosine")]
    schedule: String,
    /// Shift training images by up to this many pixels (0: no augmentation)
    #[arg(long, default_value_t = 0)]
    shift: usize,
    /// Seeds the weights, the shuffling and the augmentation
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images held out at the end of the data set for the accuracy after each epoch (0: none)
    #[arg(long, default_value_t = MNIST10K_TEST)]
    test_size: usize,
    /// Where to write the model (.safetensors, loadable by PyTorch; see tools/export_torch.py)
    #[arg(long)]
    out: PathBuf,
    /// Print one JSON object per epoch
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run_train(args: TrainArgs) -> Result<()> {
    let optimizer = Optimizer::parse(&args.optimizer)?;
    let cosine = match args.schedule.as_str() {
        "cosine" => true,
        "constant" => false,
        s => {
            return Err(Error::Input(format!(
                "unknown schedule `{s}`; expected cosine or constant"
            )));
        }
    };
    let layers = parse_arch(&args.arch).map_err(|e| Error::Input(format!("--arch: {e}")))?;
    let data = Dataset::load(&args.data)?;
    let shape = match &args.input_shape {
        Some(s) => parse_input_shape(s).map_err(Error::Input)?,
        None => data.shape,
    };
    let model = Model::random(layers, shape, args.seed)?;
    let (train_set, test_set) = if args.test_size > 0 {
        (
            data.split(Split::Train, args.test_size)?,
            Some(data.split(Split::Test, args.test_size)?),
        )
    } else {
        (data, None)
    };
    if args.device.is_cpu() {
        return Err(Error::Input(
            "training runs on the GPU; --backend cpu is for checking attributions".into(),
        ));
    }
    let gpu = Gpu::new(&args.device.gpu_options())?;
    let config = TrainConfig {
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        optimizer,
        seed: args.seed,
        shift: args.shift,
        cosine,
        progress: !args.json,
    };
    if !args.json {
        println!(
            "training {} on {} images ({} held out) on {}",
            model.arch(),
            train_set.len(),
            test_set.as_ref().map_or(0, |t| t.len()),
            gpu.describe()
        );
    }
    let (trained, _) = train(&gpu, &model, &train_set, test_set.as_ref(), &config, |r| {
        if args.json {
            println!("{}", serde_json::to_string(r).unwrap());
        } else {
            let test = r
                .test_accuracy
                .map_or(String::new(), |a| format!(", test accuracy {a:.4}"));
            println!(
                "epoch {}/{}: loss {:.4}, train accuracy {:.4}{test}, {:.0} images/s",
                r.epoch, args.epochs, r.loss, r.train_accuracy, r.images_per_s
            );
        }
    })?;
    trained.save(&args.out)?;
    if !args.json {
        println!("wrote {}", args.out.display());
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Model file
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Print one final JSON line with the scores
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run_eval(args: EvalArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let data = args.data.load()?;
    let mut backend = args.device.backend(&model, data.len())?;
    let s = score(backend.as_mut(), &data)?;
    if args.json {
        let line = json!({
            "accuracy": s.accuracy,
            "count": s.count,
            "per_class": s.per_class,
            "confusion": s.confusion,
            "device": backend.device(),
        });
        println!("{line}");
        return Ok(());
    }
    println!(
        "accuracy {:.4} on {} images ({})",
        s.accuracy,
        s.count,
        backend.device()
    );
    println!(
        "per class: {}",
        s.per_class
            .iter()
            .map(|a| format!("{a:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("confusion (rows: true class, columns: predicted):");
    for row in &s.confusion {
        println!(
            "  {}",
            row.iter().map(|c| format!("{c:5}")).collect::<String>()
        );
    }
    Ok(())
}
