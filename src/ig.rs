//! Integrated Gradients on any [`Backend`]: the quadrature's points plus F(b) and F(x), and per-image
//! diagnostics (completeness delta, the output and gradient norm along the path).

use crate::backend::{Backend, Batch, RunStats};
use crate::error::{Error, Result};
use crate::quadrature::Quadrature;
use crate::schedule::PathPlan;
use serde::Serialize;

/// The output and gradient along one image's path, at the gradient points.
#[derive(Clone, Debug, Serialize)]
pub struct PathReport {
    pub alphas: Vec<f64>,
    pub weights: Vec<f64>,
    /// F(b + alpha (x - b)).
    pub f: Vec<f64>,
    /// |dF/dx| at the same points.
    pub grad_norm: Vec<f64>,
    /// dF/dalpha = dF/dx . (x - b) at the same points.
    pub slope: Vec<f64>,
}

/// Diagnostics of one image's attribution.
#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    pub image: usize,
    pub target: usize,
    pub f_input: f64,
    pub f_baseline: f64,
    pub attribution_sum: f64,
    /// attribution_sum - (f_input - f_baseline): zero for exact IG.
    pub delta: f64,
    pub path: PathReport,
}

/// Attributions of a batch, `dim` values per image in the input's layout, with diagnostics.
#[derive(Clone, Debug)]
pub struct Attribution {
    pub values: Vec<f64>,
    pub images: Vec<ImageReport>,
    pub stats: RunStats,
}

/// IG of every image in `batch` with the same quadrature.
pub fn integrated_gradients(
    backend: &mut dyn Backend,
    batch: &Batch,
    quadrature: &Quadrature,
) -> Result<Attribution> {
    if quadrature.is_empty() {
        return Err(Error::Input(
            "zero steps: IG needs at least one gradient evaluation".into(),
        ));
    }
    let plan = PathPlan::new(quadrature.clone(), vec![0.0, 1.0]);
    let plans = vec![plan; batch.len()];
    let eval = backend.evaluate(batch, &plans)?;
    let dim = batch.dim;
    let images = (0..batch.len())
        .map(|i| {
            let sum: f64 = eval.attributions[i * dim..(i + 1) * dim].iter().sum();
            let (f_baseline, f_input) = (eval.forward_f[i][0], eval.forward_f[i][1]);
            ImageReport {
                image: i,
                target: batch.targets[i],
                f_input,
                f_baseline,
                attribution_sum: sum,
                delta: sum - (f_input - f_baseline),
                path: PathReport {
                    alphas: quadrature.alphas.clone(),
                    weights: quadrature.weights.clone(),
                    f: eval.gradient_f[i].clone(),
                    grad_norm: eval.gradient_norm[i].clone(),
                    slope: eval.gradient_slope[i].clone(),
                },
            }
        })
        .collect();
    Ok(Attribution {
        values: eval.attributions,
        images,
        stats: eval.stats,
    })
}

/// Which logit to explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The same class for every image.
    Class(usize),
    /// One class per image.
    PerImage(Vec<usize>),
    /// Each image's highest logit.
    Predicted,
}

impl Target {
    /// `K`, `K1,K2,...` or `predicted`.
    pub fn parse(text: &str) -> Result<Target> {
        if text == "predicted" {
            return Ok(Target::Predicted);
        }
        let classes: Vec<usize> = text
            .split(',')
            .map(|t| {
                t.trim().parse().map_err(|_| {
                    Error::Input(format!(
                        "target `{t}` is not a class index (use K, K1,K2,.. or predicted)"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(match classes[..] {
            [k] => Target::Class(k),
            _ => Target::PerImage(classes),
        })
    }

    /// The class of each of `images` images (`inputs` is needed only for `Predicted`).
    pub fn resolve(
        &self,
        backend: &mut dyn Backend,
        inputs: &[f32],
        images: usize,
    ) -> Result<Vec<usize>> {
        match self {
            Target::Class(k) => Ok(vec![*k; images]),
            Target::PerImage(v) if v.len() == images => Ok(v.clone()),
            Target::PerImage(v) => Err(Error::Input(format!(
                "{} targets given for {images} image(s); give one per image",
                v.len()
            ))),
            Target::Predicted => Ok(backend.logits(inputs)?.iter().map(|l| argmax(l)).collect()),
        }
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}
