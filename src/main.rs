//! The `gig` command line: `gig info`, `gig attribute`.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gig",
    version,
    about = "Integrated Gradients for image CNNs on the GPU (wgpu)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List adapters, the one gig would pick, and its limits and features.
    Info(cli::info::Args),
    /// Attribute a model's output to its input pixels with Integrated Gradients.
    Attribute(cli::attribute::Args),
    /// Time attributions of a batch, with per-kernel GPU times.
    Bench(cli::bench::Args),
    /// Train a CNN on the GPU and write it as a model file.
    Train(cli::train::TrainArgs),
    /// Accuracy, per-class accuracy and confusion matrix of a model on a data set.
    Eval(cli::train::EvalArgs),
    /// Error of every method against exact IG as the budget grows, on held-out images.
    Study(cli::study::Args),
    /// Faithfulness metrics of attribution methods (deletion, insertion, infidelity, sensitivity,
    /// completeness) on a data set, against a random-attribution baseline.
    EvalAttr(cli::eval_attr::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => cli::info::run(args),
        Command::Attribute(args) => cli::attribute::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Train(args) => cli::train::run_train(args),
        Command::Eval(args) => cli::train::run_eval(args),
        Command::Study(args) => cli::study::run(args),
        Command::EvalAttr(args) => cli::eval_attr::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
