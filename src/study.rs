//! The accuracy study behind `gig study`: how far each method's attributions are from exact IG as the
//! budget grows, measured on real images.
//!
//! The reference is exact, not a high step count: every layer gig supports is piecewise linear, so the
//! CPU twin walks each path from one linear piece to the next ([`CpuBackend::exact_ig`]) in f64.

use crate::backend::{Backend, Batch};
use crate::cpu::CpuBackend;
use crate::error::Result;
use crate::method::{self, Method, Settings};
use crate::model::Model;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// One method at one budget, over all images.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub method: &'static str,
    /// `--steps`: points for uniform rules, gradient-evaluation equivalents for the others.
    pub budget: usize,
    /// Relative L2 error of the attributions against exact IG: median and largest over the images.
    pub median: f64,
    pub max: f64,
    /// Budget actually spent per image (mean), in gradient-evaluation equivalents.
    pub spent: f64,
    /// Wall time of the whole batch, seconds.
    pub seconds: f64,
    pub images: usize,
}

/// |a - b| / |b| in the L2 norm (0 when both vanish).
pub fn relative_l2(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let n: f64 = b.iter().map(|y| y * y).sum();
    if n == 0.0 { d.sqrt() } else { (d / n).sqrt() }
}

/// Exact IG of every image of `batch`, images in parallel; `done` is called after each image.
/// Returns the attributions and the number of linear pieces of each path.
pub fn exact_reference(
    model: &Model,
    batch: &Batch,
    done: impl Fn() + Sync,
) -> Result<(Vec<f64>, Vec<usize>)> {
    let cpu = CpuBackend::new(model);
    let dim = batch.dim;
    let per_image: Vec<(Vec<f64>, usize)> = (0..batch.len())
        .into_par_iter()
        .map(|i| {
            let x: Vec<f64> = batch.inputs[i * dim..(i + 1) * dim]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let b: Vec<f64> = batch.baselines[i * dim..(i + 1) * dim]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let r = cpu.exact_ig(&x, &b, batch.targets[i]);
            done();
            r
        })
        .collect::<Result<_>>()?;
    let pieces = per_image.iter().map(|r| r.1).collect();
    Ok((per_image.into_iter().flat_map(|r| r.0).collect(), pieces))
}

/// Runs every method at every budget on `batch` and scores it against `reference`. Each method runs
/// once untimed first, so pipeline compilation is not counted.
pub fn run(
    backend: &mut dyn Backend,
    batch: &Batch,
    reference: &[f64],
    methods: &[Method],
    budgets: &[usize],
    mut done: impl FnMut(&Row),
) -> Result<Vec<Row>> {
    let dim = batch.dim;
    let mut rows = Vec::new();
    for &method in methods {
        let warm = Settings {
            steps: budgets.iter().copied().min().unwrap_or(16),
            ..Settings::default()
        };
        method::explain(backend, batch, method, &warm)?;
        for &budget in budgets {
            let settings = Settings {
                steps: budget,
                ..Settings::default()
            };
            let start = Instant::now();
            let e = method::explain(backend, batch, method, &settings)?;
            let seconds = start.elapsed().as_secs_f64();
            let mut errors: Vec<f64> = (0..batch.len())
                .map(|i| {
                    relative_l2(
                        &e.values[i * dim..(i + 1) * dim],
                        &reference[i * dim..(i + 1) * dim],
                    )
                })
                .collect();
            errors.sort_by(f64::total_cmp);
            let row = Row {
                method: method.name(),
                budget,
                median: median(&errors),
                max: *errors.last().unwrap(),
                spent: e.images.iter().map(|r| r.budget_spent).sum::<f64>() / batch.len() as f64,
                seconds,
                images: batch.len(),
            };
            done(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The median of sorted values.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// For each method, the smallest budget whose median error is at most `goal`, with its row.
pub fn cheapest(rows: &[Row], goal: f64) -> Vec<&Row> {
    let mut out: Vec<&Row> = Vec::new();
    for r in rows.iter().filter(|r| r.median <= goal) {
        match out.iter_mut().find(|o| o.method == r.method) {
            Some(o) if r.budget < o.budget => *o = r,
            Some(_) => {}
            None => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_and_median() {
        assert_eq!(relative_l2(&[3.0, 4.0], &[0.0, 0.0]), 5.0);
        assert!((relative_l2(&[1.0, 1.0], &[1.0, 2.0]) - (1.0f64 / 5.0).sqrt()).abs() < 1e-15);
        assert_eq!(median(&[1.0, 2.0, 10.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
    }

    #[test]
    fn cheapest_budget_per_method() {
        let row = |method, budget, median| Row {
            method,
            budget,
            median,
            max: median,
            spent: budget as f64,
            seconds: 1.0,
            images: 1,
        };
        let rows = [
            row("a", 64, 1e-3),
            row("a", 128, 3e-4),
            row("a", 256, 1e-4),
            row("b", 512, 5e-4),
        ];
        let best = cheapest(&rows, 4e-4);
        assert_eq!(best.len(), 1);
        assert_eq!((best[0].method, best[0].budget), ("a", 128));
    }
}
