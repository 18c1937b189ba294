//! Two tilings side by side, kernel by kernel, in one process: for kernel tuning on a noisy machine.
//!
//! Builds two engines on the shipped model, one with the adapter's tiling (A) and one with the
//! changes given (B), runs the same attribution on each, then reruns every dispatch alone
//! (`Engine::rerun_dispatch`) on A and B in turn, PAIRS times, and prints each kernel's median time on
//! both and the median of B / A over the pairs. Each pair runs within milliseconds, so both see the
//! machine in the same state: on the 2-core lavapipe box, whose speed drifts by 2x from hour to hour,
//! unchanged kernels come out within 1-3% of 1, where whole `gig bench` runs do not resolve 10%
//! (BENCHMARKS.md, "The second conv along the path, and lavapipe's thread pool"). For changes to a
//! kernel's code rather than its tiling, add a `Tiling` field that turns it on (as `fit_lane_rows`).
//!
//! cargo run --release --example tiling_ab -- [--steps 50] [--cells N] [--images 1] [--pairs 100]
//!     [--only TEXT] FIELD=VALUE ...
//!
//! FIELD is a `Tiling` field (see `gig::gpu::Tiling`): workgroup, soft_workgroup, conv_channels,
//! conv_strip, pool_strip, linear_workgroup, linear_rows, linear_features,
//! winograd_channels, winograd_soft_channels, winograd_strip, winograd_backward_channels,
//! winograd_backward_workgroup, checked_winograd_channels, pooled_backward_channels,
//! soft_pooled_backward_channels, weight_grad_strip, weight_grad_products, diagnostics_row_lanes
//! (numbers), linear_windows, winograd_channel_loop, pooled_direct_backward, fit_lane_rows (true or
//! false).
//! `--cells N` runs N soft cells (the adaptive method's kernels) instead of Gauss-Legendre points.
//! `--only` keeps the kernels whose label contains TEXT (comma-separated alternatives).

use gig::gpu::Tiling;
use gig::schedule::PathPlan;
use gig::{Backend, Batch, Engine, EngineOptions, Gpu, GpuOptions, Model, Rule, Tensor};
use std::time::Instant;

fn set(t: &mut Tiling, field: &str, value: &str) -> Result<(), String> {
    let number = || {
        value
            .parse::<usize>()
            .map_err(|e| format!("{field}={value}: {e}"))
    };
    let flag = || {
        value
            .parse::<bool>()
            .map_err(|e| format!("{field}={value}: {e}"))
    };
    match field {
        "workgroup" => t.workgroup = number()?,
        "soft_workgroup" => t.soft_workgroup = number()?,
        "conv_channels" => t.conv_channels = number()?,
        "conv_strip" => t.conv_strip = number()?,
        "pool_strip" => t.pool_strip = number()?,
        "linear_workgroup" => t.linear_workgroup = number()?,
        "linear_rows" => t.linear_rows = number()?,
        "linear_features" => t.linear_features = number()?,
        "winograd_channels" => t.winograd_channels = number()?,
        "winograd_soft_channels" => t.winograd_soft_channels = number()?,
        "winograd_strip" => t.winograd_strip = number()?,
        "winograd_backward_channels" => t.winograd_backward_channels = number()?,
        "winograd_backward_workgroup" => t.winograd_backward_workgroup = number()?,
        "checked_winograd_channels" => t.checked_winograd_channels = number()?,
        "pooled_backward_channels" => t.pooled_backward_channels = number()?,
        "soft_pooled_backward_channels" => t.soft_pooled_backward_channels = number()?,
        "weight_grad_strip" => t.weight_grad_strip = number()?,
        "weight_grad_products" => t.weight_grad_products = number()?,
        "diagnostics_row_lanes" => t.diagnostics_row_lanes = number()?,
        "linear_windows" => t.linear_windows = flag()?,
        "winograd_channel_loop" => t.winograd_channel_loop = flag()?,
        "pooled_direct_backward" => t.pooled_direct_backward = flag()?,
        "fit_lane_rows" => t.fit_lane_rows = flag()?,
        _ => return Err(format!("unknown Tiling field {field}")),
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut steps, mut images, mut pairs, mut only) = (50, 1, 100, String::new());
    let mut cells = None;
    let gpu = Gpu::new(&GpuOptions::default())?;
    let a_tiling = Tiling::for_adapter(&gpu.info);
    let mut b_tiling = a_tiling;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--steps" => steps = value()?.parse()?,
            "--cells" => cells = Some(value()?.parse::<usize>()?),
            "--images" => images = value()?.parse()?,
            "--pairs" => pairs = value()?.parse()?,
            "--only" => only = value()?,
            change => {
                let (field, v) = change
                    .split_once('=')
                    .ok_or(format!("expected FIELD=VALUE: {change}"))?;
                set(&mut b_tiling, field, v)?;
            }
        }
    }
    if b_tiling == a_tiling {
        return Err("no change to compare: give FIELD=VALUE".into());
    }
    let model = Model::load("assets/mnist_cnn.safetensors")?;
    let digits: Vec<String> = (0..10).map(|d| format!("assets/digits/{d}.png")).collect();
    let shipped = Tensor::read_images(&digits, model.input_shape())?;
    let dim = model.input_len();
    let inputs = (0..images)
        .flat_map(|i| shipped.data[(i % 10) * dim..][..dim].to_vec())
        .collect();
    let batch = Batch::new(
        &model,
        inputs,
        vec![0.0; images * dim],
        (0..images).map(|i| i % 10).collect(),
    )?;
    let plan = match cells {
        Some(n) => PathPlan::cells(Rule::RiemannMiddle.nodes(n)?, vec![0.0, 1.0]),
        None => PathPlan::new(Rule::GaussLegendre.nodes(steps)?, vec![0.0, 1.0]),
    };
    let plans = vec![plan; images];
    let engine = |tiling| -> Result<Engine, Box<dyn std::error::Error>> {
        let options = EngineOptions {
            tiling: Some(tiling),
            ..EngineOptions::default()
        };
        let mut e = Engine::new(&gpu, &model, options)?;
        let stats = e.evaluate(&batch, &plans)?.stats;
        // Reruns repeat the last chunk: the whole attribution must be one.
        if stats.chunks != 1 {
            return Err(format!("{} chunks: use fewer --images or --steps", stats.chunks).into());
        }
        Ok(e)
    };
    let mut a = engine(a_tiling)?;
    let mut b = engine(b_tiling)?;
    let what = match cells {
        Some(n) => format!("{n} soft cells"),
        None => format!("{steps} Gauss-Legendre steps"),
    };
    println!(
        "{}, {images} image(s) x {what}, {pairs} pairs",
        gpu.describe()
    );
    let (la, lb) = (a.dispatch_labels(), b.dispatch_labels());
    for (i, label) in la.iter().enumerate() {
        if !only.is_empty() && !only.split(',').any(|o| label.contains(o)) {
            continue;
        }
        // Matched by label: B's program may have other dispatches.
        let Some(j) = lb.iter().position(|l| l == label) else {
            println!("{i:2} {label:42} not in B's program");
            continue;
        };
        let (mut ta, mut tb, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        let time = |e: &mut Engine, k: usize| -> Result<f64, gig::Error> {
            let start = Instant::now();
            e.rerun_dispatch(k)?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        };
        for p in 0..pairs {
            // Either engine first, by turns.
            let (x, y) = if p % 2 == 0 {
                let x = time(&mut a, i)?;
                (x, time(&mut b, j)?)
            } else {
                let y = time(&mut b, j)?;
                (time(&mut a, i)?, y)
            };
            ta.push(x);
            tb.push(y);
            ratio.push(y / x);
        }
        let faster = ratio.iter().filter(|r| **r < 1.0).count();
        println!(
            "{i:2} {label:42} A {:7.3} ms  B {:7.3} ms  B/A {:.3}  B faster in {faster}/{pairs}",
            median(&mut ta),
            median(&mut tb),
            median(&mut ratio)
        );
    }
    for (j, label) in lb.iter().enumerate().filter(|(_, l)| !la.contains(l)) {
        println!("{j:2} {label:42} only in B's program");
    }
    Ok(())
}
