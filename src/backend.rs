//! What an evaluation backend takes and returns: the GPU engine and the CPU reference both implement
//! [`Backend`], so every method built on top (IG, adaptive placement, metrics) runs on either.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::schedule::{PathPlan, Point};
use serde::Serialize;
use std::ops::Range;

/// Images to explain, each flattened to `dim = C * H * W` values.
#[derive(Clone, Debug)]
pub struct Batch {
    pub inputs: Vec<f32>,
    pub baselines: Vec<f32>,
    /// The logit explained, per image.
    pub targets: Vec<usize>,
    pub dim: usize,
}

impl Batch {
    /// Checks sizes, finiteness and targets against the model.
    pub fn new(
        model: &Model,
        inputs: Vec<f32>,
        baselines: Vec<f32>,
        targets: Vec<usize>,
    ) -> Result<Batch> {
        let dim = model.input_len();
        let n = targets.len();
        if n == 0 {
            return Err(Error::Input("no images to explain".into()));
        }
        for (what, v) in [("inputs", &inputs), ("baselines", &baselines)] {
            if v.len() != n * dim {
                return Err(Error::Input(format!(
                    "{what} hold {} values but {n} image(s) of shape {:?} need {}",
                    v.len(),
                    model.input_shape(),
                    n * dim
                )));
            }
            check_finite(what, v, dim)?;
        }
        let classes = model.classes();
        if let Some((i, t)) = targets.iter().enumerate().find(|(_, t)| **t >= classes) {
            return Err(Error::Input(format!(
                "target {t} of image {i} is out of range: the model has {classes} outputs (0..{})",
                classes - 1
            )));
        }
        Ok(Batch {
            inputs,
            baselines,
            targets,
            dim,
        })
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// Fails on the first NaN or infinity, naming the image and position.
pub fn check_finite(what: &str, values: &[f32], dim: usize) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(k) => Err(Error::Input(format!(
            "{what}: value {} of image {} is {} (inputs must be finite)",
            k % dim,
            k / dim,
            values[k]
        ))),
    }
}

/// What ran where, and how the work was cut.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunStats {
    /// "gpu" or "cpu".
    pub backend: String,
    /// Adapter and graphics API, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) on Vulkan".
    pub device: String,
    pub groups: usize,
    pub chunks: usize,
    pub dispatches: usize,
    pub submissions: usize,
    pub readbacks: usize,
    pub gradient_rows: usize,
    pub forward_rows: usize,
}

impl RunStats {
    pub fn add(&mut self, other: &RunStats) {
        self.groups += other.groups;
        self.chunks += other.chunks;
        self.dispatches += other.dispatches;
        self.submissions += other.submissions;
        self.readbacks += other.readbacks;
        self.gradient_rows += other.gradient_rows;
        self.forward_rows += other.forward_rows;
    }
}

/// The result of evaluating path plans.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Per image and input value: (x - b) * sum_k w_k dF/dx(b + alpha_k (x - b)).
    pub attributions: Vec<f64>,
    /// Per image, per gradient point: F at the point.
    pub gradient_f: Vec<Vec<f64>>,
    /// Per image, per gradient point: the L2 norm of dF/dx at the point.
    pub gradient_norm: Vec<Vec<f64>>,
    /// Per image, per gradient point: dF/dalpha = dF/dx . (x - b), the integrand of completeness.
    pub gradient_slope: Vec<Vec<f64>>,
    /// Per image, per gradient point: dF/dx . p for a fixed pseudo-random p (`probe_weight` in
    /// shaders/common.wgsl): points with equal gradients have equal fingerprints.
    pub gradient_probe: Vec<Vec<f64>>,
    /// Per image, per forward point: F at the point.
    pub forward_f: Vec<Vec<f64>>,
    pub stats: RunStats,
}

impl Evaluation {
    /// An empty result shaped for `plans`, to be filled in by a backend.
    pub fn zeros(plans: &[PathPlan], dim: usize) -> Evaluation {
        Evaluation {
            attributions: vec![0.0; plans.len() * dim],
            gradient_f: plans.iter().map(|p| vec![0.0; p.gradient.len()]).collect(),
            gradient_norm: plans.iter().map(|p| vec![0.0; p.gradient.len()]).collect(),
            gradient_slope: plans.iter().map(|p| vec![0.0; p.gradient.len()]).collect(),
            gradient_probe: plans.iter().map(|p| vec![0.0; p.gradient.len()]).collect(),
            forward_f: plans.iter().map(|p| vec![0.0; p.forward.len()]).collect(),
            stats: RunStats::default(),
        }
    }
}

impl Evaluation {
    /// Copies the diagnostics of `part` (images indexed from 0) to images `start..`.
    pub fn merge(&mut self, start: usize, part: &Evaluation) {
        for (i, k) in (start..start + part.gradient_f.len()).enumerate() {
            self.gradient_f[k] = part.gradient_f[i].clone();
            self.gradient_norm[k] = part.gradient_norm[i].clone();
            self.gradient_slope[k] = part.gradient_slope[i].clone();
            self.gradient_probe[k] = part.gradient_probe[i].clone();
            self.forward_f[k] = part.forward_f[i].clone();
        }
    }

    /// Stores the diagnostics of one point of image `image`'s plan.
    pub fn record(
        &mut self,
        image: usize,
        point: Point,
        f: f32,
        norm: f32,
        slope: f32,
        probe: f32,
    ) {
        match point {
            Point::Gradient(k) => {
                self.gradient_f[image][k] = f64::from(f);
                self.gradient_norm[image][k] = f64::from(norm);
                self.gradient_slope[image][k] = f64::from(slope);
                self.gradient_probe[image][k] = f64::from(probe);
            }
            Point::Forward(k) => self.forward_f[image][k] = f64::from(f),
        }
    }
}

/// Component d of the gradient fingerprint vector: the twin of `probe_weight` in shaders/common.wgsl.
pub fn probe_weight(d: usize) -> f64 {
    let mut h = (d as u32).wrapping_mul(747796405).wrapping_add(2891336453);
    h = ((h >> ((h >> 28) + 4)) ^ h).wrapping_mul(277803737);
    h ^= h >> 22;
    // The GPU rounds h to f32 before scaling.
    f64::from(h as f32) * (2.0 / 4294967296.0) - 1.0
}

/// How a multi-round evaluation accumulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundOptions {
    /// Accumulators per image.
    pub slots: usize,
    /// Multiply each gradient's weight by its dF/dalpha (Integrated Decision Gradients).
    pub idg: bool,
    /// Points may stand for cells (`PathPlan::cells`); the GPU then runs its soft kernels.
    pub soft: bool,
}

/// Decides the rounds of a multi-round evaluation (adaptive placement): the backend asks it for the
/// next round of each group of images it holds, hands it that round's results, and finally asks for the
/// weight of every accumulator.
pub trait RoundDriver {
    /// The next round's plans for the images `images` of the batch (one plan each, gradient points
    /// naming their accumulator in `PathPlan::slots`), given the last round's results for the same images
    /// (indexed from 0; None before the first round); None when the images are done.
    fn next(
        &mut self,
        images: Range<usize>,
        last: Option<&Evaluation>,
    ) -> Result<Option<Vec<PathPlan>>>;

    /// The weight of each accumulator of each image in `images`, once they are done.
    fn weights(&mut self, images: Range<usize>) -> Vec<Vec<f64>>;

    /// Called after `next` returned plans: the weights `weights` will return, if the round just
    /// planned is surely the last (`next` will return None after it) and they do not depend on its
    /// results. The GPU then finishes the attributions in that round's submission instead of one of
    /// their own.
    fn final_weights(&mut self, _images: Range<usize>) -> Option<Vec<Vec<f64>>> {
        None
    }

    /// The most points (gradient and forward) one image gets in one round.
    fn max_points(&self) -> usize;
}

/// Something that evaluates a model along straight-line paths: the GPU engine or the CPU reference.
pub trait Backend {
    fn model(&self) -> &Model;

    /// Evaluates every image's plan: gradient points forward and backward, forward points forward only.
    fn evaluate(&mut self, batch: &Batch, plans: &[PathPlan]) -> Result<Evaluation>;

    /// Multi-round evaluation as `driver` decides: returns the attributions, (x - b) times the weighted
    /// sum of each image's accumulators, and what ran.
    fn rounds(
        &mut self,
        batch: &Batch,
        options: RoundOptions,
        driver: &mut dyn RoundDriver,
    ) -> Result<Evaluation>;

    /// The logits of each image (`inputs` holds whole images, `model.input_len()` values each).
    fn logits(&mut self, inputs: &[f32]) -> Result<Vec<Vec<f64>>>;

    /// Adapter and API, or "cpu (f64)".
    fn device(&self) -> String;
}

/// Checks that there is one plan per image and that every alpha is in [0, 1] and every weight finite.
pub fn check_plans(batch: &Batch, plans: &[PathPlan]) -> Result<()> {
    if plans.len() != batch.len() {
        return Err(Error::Input(format!(
            "{} plans for {} images",
            plans.len(),
            batch.len()
        )));
    }
    for (i, p) in plans.iter().enumerate() {
        let alphas = p.gradient.alphas.iter().chain(&p.forward);
        if let Some(a) = alphas.into_iter().find(|a| !(0.0..=1.0).contains(*a)) {
            return Err(Error::Input(format!(
                "image {i}: alpha {a} is outside [0, 1]"
            )));
        }
        if p.gradient.alphas.len() != p.gradient.weights.len()
            || p.gradient.weights.iter().any(|w| !w.is_finite())
        {
            return Err(Error::Input(format!(
                "image {i}: quadrature weights are missing or not finite"
            )));
        }
        let n = p.gradient.len();
        if (!p.cells.is_empty() && p.cells.len() != n)
            || (!p.slots.is_empty() && p.slots.len() != n)
        {
            return Err(Error::Input(format!(
                "image {i}: cells or slots do not match the gradient points"
            )));
        }
    }
    Ok(())
}

/// Checks that every point of a multi-round plan names one of the `slots` accumulators.
pub fn check_slots(plans: &[PathPlan], slots: usize) -> Result<()> {
    match plans.iter().flat_map(|p| &p.slots).find(|&&s| s >= slots) {
        Some(s) => Err(Error::Input(format!(
            "a point names accumulator {s} of {slots}"
        ))),
        None => Ok(()),
    }
}
