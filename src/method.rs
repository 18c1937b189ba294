//! The attribution methods behind `--method`, with one report format: a uniform quadrature rule
//! (Captum's), adaptive cells, Split IG and Integrated Decision Gradients, on any [`Backend`].

use crate::adaptive::{self, AdaptiveConfig};
use crate::backend::{Backend, Batch, RunStats};
use crate::error::{Error, Result};
use crate::ig::{PathReport, integrated_gradients};
use crate::quadrature::Rule;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Captum's rule with `steps` points.
    Uniform(Rule),
    /// Probe-shaped soft cells with refinement rounds ([`crate::adaptive`]).
    Adaptive,
    /// Split IG: the attribution of the path up to where F reaches a share of its change.
    Split,
    /// Integrated Decision Gradients: gradients weighted by dF/dalpha, sampled where F changes.
    Idg,
    /// Exact IG on the CPU in f64, walking each path from one linear piece to the next (slow; the
    /// reference of `gig study`).
    Exact,
}

impl Method {
    /// Every name `parse` accepts.
    pub const NAMES: [&str; 9] = [
        "riemann_left",
        "riemann_right",
        "riemann_middle",
        "riemann_trapezoid",
        "gausslegendre",
        "adaptive",
        "split",
        "idg",
        "exact",
    ];

    pub fn parse(name: &str) -> Result<Method> {
        match name {
            "adaptive" => Ok(Method::Adaptive),
            "split" => Ok(Method::Split),
            "idg" => Ok(Method::Idg),
            "exact" => Ok(Method::Exact),
            _ => Rule::parse(name).map(Method::Uniform).map_err(|_| {
                Error::Input(format!(
                    "unknown method `{name}` (use one of {})",
                    Method::NAMES.join(", ")
                ))
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Method::Uniform(rule) => rule.name(),
            Method::Adaptive => "adaptive",
            Method::Split => "split",
            Method::Idg => "idg",
            Method::Exact => "exact",
        }
    }
}

/// The knobs of every method; each uses those that concern it.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Uniform rules: the number of gradient evaluations. Other methods: the budget per image in
    /// gradient-evaluation equivalents (a forward-only point counts 1/3).
    pub steps: usize,
    /// Adaptive: stop refining once the error estimate is below this.
    pub tolerance: Option<f64>,
    /// Split: the share of F(x) - F(b) at which the path is cut, in (0, 1).
    pub split_ratio: f64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            steps: 50,
            tolerance: None,
            split_ratio: 0.9,
        }
    }
}

/// The forward-only probe of F along the path.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Probe {
    pub alphas: Vec<f64>,
    pub f: Vec<f64>,
}

/// Split IG's accounting: the path is cut at `alpha` where F first reaches `f_cut`.
#[derive(Clone, Debug, Serialize)]
pub struct SplitReport {
    pub ratio: f64,
    pub alpha: f64,
    pub f_cut: f64,
    /// Attribution sums of [0, alpha] (the attribution) and of [alpha, 1].
    pub left_sum: f64,
    pub right_sum: f64,
    /// left_sum + right_sum - (F(x) - F(b)): the completeness delta of the whole path.
    pub total_delta: f64,
    /// left_sum - (F(cut) - F(b)): the completeness delta of the attributed part.
    pub left_delta: f64,
}

/// What one image's attribution spent and how complete it is.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub image: usize,
    pub target: usize,
    pub method: &'static str,
    pub f_input: f64,
    pub f_baseline: f64,
    pub attribution_sum: f64,
    /// What the attribution sum should equal: F(x) - F(b) for IG and adaptive, F(cut) - F(b) for
    /// split, the integral of (dF/dalpha)^2 for IDG.
    pub expected_sum: f64,
    /// Which quantity `expected_sum` is.
    pub completeness: &'static str,
    /// attribution_sum - expected_sum.
    pub delta: f64,
    /// Gradient evaluations (cells included), forward-only evaluations, and the budget they cost in
    /// gradient-evaluation equivalents.
    pub gradient_evaluations: usize,
    pub forward_evaluations: usize,
    pub budget_spent: f64,
    pub rounds: usize,
    /// Adaptive: the estimated relative L2 error of the attributions.
    pub error_estimate: Option<f64>,
    /// The gradient points: alphas, weights, F, |dF/dx| and dF/dalpha there.
    pub path: PathReport,
    /// Adaptive, split, IDG: the cell widths each alpha stands for (empty for points).
    pub cells: Vec<f64>,
    pub probe: Option<Probe>,
    pub split: Option<SplitReport>,
}

/// Attributions of a batch (`dim` values per image) and one report per image.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub values: Vec<f64>,
    pub images: Vec<Report>,
    pub stats: RunStats,
}

/// Attributes every image of `batch` with `method`.
pub fn explain(
    backend: &mut dyn Backend,
    batch: &Batch,
    method: Method,
    settings: &Settings,
) -> Result<Explanation> {
    match method {
        Method::Uniform(rule) => uniform(backend, batch, rule, settings.steps),
        Method::Adaptive => {
            let mut config = AdaptiveConfig::new(settings.steps as f64);
            config.tolerance = settings.tolerance;
            adaptive::run(backend, batch, &config)
        }
        Method::Split => adaptive::run(
            backend,
            batch,
            &AdaptiveConfig::split(settings.steps as f64, settings.split_ratio),
        ),
        Method::Idg => adaptive::run(backend, batch, &AdaptiveConfig::idg(settings.steps as f64)),
        Method::Exact => exact(backend, batch),
    }
}

/// Exact IG on the CPU twin, whatever the backend; F(x) and F(b) from the backend.
fn exact(backend: &mut dyn Backend, batch: &Batch) -> Result<Explanation> {
    let model = backend.model().clone();
    let (values, pieces) = crate::study::exact_reference(&model, batch, || {})?;
    let dim = batch.dim;
    let f_input = backend.logits(&batch.inputs)?;
    let f_baseline = backend.logits(&batch.baselines)?;
    let images = (0..batch.len())
        .map(|i| {
            let t = batch.targets[i];
            let (fx, fb) = (f_input[i][t], f_baseline[i][t]);
            let sum: f64 = values[i * dim..(i + 1) * dim].iter().sum();
            Report {
                image: i,
                target: t,
                method: "exact",
                f_input: fx,
                f_baseline: fb,
                attribution_sum: sum,
                expected_sum: fx - fb,
                completeness: "F(x) - F(b)",
                delta: sum - (fx - fb),
                gradient_evaluations: pieces[i],
                forward_evaluations: pieces[i],
                budget_spent: pieces[i] as f64 * 4.0 / 3.0,
                rounds: pieces[i],
                error_estimate: Some(0.0),
                path: PathReport {
                    alphas: Vec::new(),
                    weights: Vec::new(),
                    f: Vec::new(),
                    grad_norm: Vec::new(),
                    slope: Vec::new(),
                },
                cells: Vec::new(),
                probe: None,
                split: None,
            }
        })
        .collect();
    let stats = RunStats {
        backend: "cpu".into(),
        device: "cpu (f64), exact".into(),
        gradient_rows: pieces.iter().sum(),
        ..RunStats::default()
    };
    Ok(Explanation {
        values,
        images,
        stats,
    })
}

fn uniform(
    backend: &mut dyn Backend,
    batch: &Batch,
    rule: Rule,
    steps: usize,
) -> Result<Explanation> {
    let ig = integrated_gradients(backend, batch, &rule.nodes(steps)?)?;
    let images = ig
        .images
        .into_iter()
        .map(|r| Report {
            image: r.image,
            target: r.target,
            method: rule.name(),
            f_input: r.f_input,
            f_baseline: r.f_baseline,
            attribution_sum: r.attribution_sum,
            expected_sum: r.f_input - r.f_baseline,
            completeness: "F(x) - F(b)",
            delta: r.delta,
            gradient_evaluations: steps,
            forward_evaluations: 2,
            budget_spent: steps as f64 + 2.0 * adaptive::FORWARD_COST,
            rounds: 1,
            error_estimate: None,
            path: r.path,
            cells: Vec::new(),
            probe: None,
            split: None,
        })
        .collect();
    Ok(Explanation {
        values: ig.values,
        images,
        stats: ig.stats,
    })
}

/// Per image, the sum of its `dim` attributions.
pub fn sums(values: &[f64], dim: usize) -> Vec<f64> {
    values.chunks(dim).map(|v| v.iter().sum()).collect()
}
