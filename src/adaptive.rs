//! Adaptive IG: where along the path the gradient evaluations go, and what each one stands for.
//!
//! For a ReLU network the IG integrand is piecewise constant along the path with about a thousand jumps
//! (every ReLU or max-pool choice that flips), so a uniform rule's error falls only as 1/n. gig's
//! adaptive method combines three things:
//!
//! - **Cells, not points.** Each gradient evaluation stands for a cell of the path: the soft kernels carry
//!   tangents through the network and replace every ReLU mask and max-pool choice by its share of the
//!   cell (`ops::soft`), so the jumps inside a cell are integrated to first order instead of being
//!   sampled. One such evaluation costs a gradient evaluation plus a forward pass of tangents: 4/3.
//! - **A probe.** A forward-only pass (1/3 each) measures F along the path. It can shape the first
//!   cells (narrower where F changes, wider where it is saturated), at the cost of a round of its own;
//!   by default it only measures F(b) and F(x), in the first cells' round, and the refinement rounds
//!   aim by the cells' own F.
//! - **Refinement.** Where neighbouring cells' linear models of F disagree at their common edge, the
//!   network is not linear across them: those cells are split, round by round, until the error
//!   estimate meets the tolerance or the budget is spent.
//!
//! The result is an estimate of the ordinary straight-line IG integral: the cells partition [0, 1] and
//! each cell's weight is its width, so it converges to IG as cells shrink.
//!
//! The saturation-aware variants use the same probe-then-cells rounds with another placement:
//! **Split IG** (Miglani et al. 2020) cuts the path where F first reaches a share of its change and
//! attributes only the part before the cut; **IDG** (Walker et al. 2023) samples points in proportion
//! to the change of F and weights each gradient by dF/dalpha.

use crate::backend::{Backend, Batch, Evaluation, RoundDriver, RoundOptions};
use crate::error::{Error, Result};
use crate::ig::PathReport;
use crate::method::{Explanation, Probe, Report, SplitReport};
use crate::quadrature::Quadrature;
use crate::schedule::PathPlan;
use std::ops::Range;

/// Budget cost of one forward-only evaluation, in gradient evaluations.
pub const FORWARD_COST: f64 = 1.0 / 3.0;
/// Budget cost of one cell evaluation (gradient plus tangents), in gradient evaluations.
pub const CELL_COST: f64 = 4.0 / 3.0;

/// How the cells are laid out after the probe, and what they stand for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Placement {
    /// Soft cells (shaped by the probe if `probe_weight` > 0), then refinement rounds.
    Adaptive,
    /// Soft cells on both sides of the cut where F first reaches F(b) + ratio (F(x) - F(b)); only the
    /// left side is attributed.
    Split { ratio: f64 },
    /// Points (not cells) in proportion to the change of F, each gradient weighted by dF/dalpha.
    Idg,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveConfig {
    pub placement: Placement,
    /// Total budget in gradient-evaluation equivalents (a forward-only point counts 1/3, a cell 4/3).
    pub budget: f64,
    /// Stop refining once the error estimate (relative, see [`Report::error_estimate`]) is below
    /// this; `None`: spend the whole budget.
    pub tolerance: Option<f64>,
    /// Forward-only probe points along the path (0 and 1 included).
    pub probes: usize,
    /// How much the probe shapes the cells: 0 uniform, 1 cells in proportion to the change of F.
    /// With 0 (adaptive placement) the probe is evaluated in the first cells' round.
    pub probe_weight: f64,
    /// Share of the cell budget placed in the first round; the rest refines (adaptive only).
    pub first_round: f64,
    /// At most this share of the cells is split in one refinement round: smaller shares aim better
    /// but take more rounds (submissions).
    pub split_share: f64,
}

impl AdaptiveConfig {
    /// Adaptive defaults for a budget: half of the cells in a uniform first round, which also measures
    /// F(b) and F(x), and the rest in refinement rounds that split where the cells' own F disagree.
    /// A probe that shapes the first cells (`probe_weight` > 0) costs a round of its own, and on
    /// held-out digits it did not pay for it (BENCHMARKS.md, "Adaptive defaults retuned" and "The
    /// probe goes with the first cells").
    pub fn new(budget: f64) -> AdaptiveConfig {
        AdaptiveConfig {
            placement: Placement::Adaptive,
            budget,
            tolerance: None,
            probes: 2,
            probe_weight: 0.0,
            first_round: 0.5,
            split_share: 0.25,
        }
    }

    /// Split IG cut at `ratio` of the change of F: a finer probe, since it locates the cut.
    pub fn split(budget: f64, ratio: f64) -> AdaptiveConfig {
        AdaptiveConfig {
            placement: Placement::Split { ratio },
            probes: 17,
            probe_weight: 0.0,
            first_round: 1.0,
            ..AdaptiveConfig::new(budget)
        }
    }

    /// IDG: points in proportion to the change of F over a 17-point probe.
    pub fn idg(budget: f64) -> AdaptiveConfig {
        AdaptiveConfig {
            placement: Placement::Idg,
            probes: 17,
            probe_weight: 0.95,
            first_round: 1.0,
            ..AdaptiveConfig::new(budget)
        }
    }

    /// Whether the first cells go with the probe, in one round: where the probe does not shape them.
    fn merges_probe(&self) -> bool {
        self.placement == Placement::Adaptive && self.probe_weight == 0.0
    }

    fn point_cost(&self) -> f64 {
        match self.placement {
            Placement::Idg => 1.0,
            _ => CELL_COST,
        }
    }

    /// Forward-only points besides the probe (split evaluates F at the cut).
    fn extra_forward(&self) -> usize {
        match self.placement {
            Placement::Split { .. } => 1,
            _ => 0,
        }
    }

    /// The fewest budget units a run needs: the probe and two cells (or points).
    pub fn min_budget(&self) -> f64 {
        (self.probes + self.extra_forward()) as f64 * FORWARD_COST + 2.0 * self.point_cost()
    }

    /// Cells (or points) the budget buys after the probe.
    fn cell_budget(&self) -> usize {
        let left = self.budget - (self.probes + self.extra_forward()) as f64 * FORWARD_COST;
        (left / self.point_cost() + 1e-9).floor().max(0.0) as usize
    }

    fn check(&self) -> Result<()> {
        if self.probes < 2 {
            return Err(Error::Input(
                "adaptive placement needs at least 2 probe points (0 and 1)".into(),
            ));
        }
        if !(self.budget.is_finite() && self.budget >= self.min_budget() - 1e-9) {
            return Err(Error::Input(format!(
                "{} needs a budget (--steps) of at least {} gradient-evaluation equivalents ({} forward-only \
                 points at 1/3 and two {} at {:.2}), got {}",
                self.name(),
                self.min_budget().ceil(),
                self.probes + self.extra_forward(),
                if self.placement == Placement::Idg {
                    "points"
                } else {
                    "cells"
                },
                self.point_cost(),
                self.budget
            )));
        }
        if let Placement::Split { ratio } = self.placement
            && !(ratio > 0.0 && ratio < 1.0)
        {
            return Err(Error::Input(format!(
                "split ratio {ratio} must lie strictly between 0 and 1"
            )));
        }
        if let Some(t) = self.tolerance
            && !(t > 0.0 && t.is_finite())
        {
            return Err(Error::Input(format!(
                "tolerance {t} must be a positive number"
            )));
        }
        let first_round_ok = self.first_round > 0.0 && self.first_round <= 1.0;
        if !((0.0..=1.0).contains(&self.probe_weight) && first_round_ok) {
            return Err(Error::Input(
                "probe_weight must lie in [0, 1] and first_round in (0, 1]".into(),
            ));
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        match self.placement {
            Placement::Adaptive => "adaptive",
            Placement::Split { .. } => "split",
            Placement::Idg => "idg",
        }
    }
}

/// One cell of an image's partition of [0, 1].
#[derive(Clone, Debug)]
struct Cell {
    lo: f64,
    hi: f64,
    /// Accumulator (slot) of its evaluation, once evaluated.
    slot: Option<usize>,
    /// F, |dF/dx| and dF/dalpha at the centre (averaged over the cell for soft cells).
    f: f64,
    norm: f64,
    slope: f64,
}

impl Cell {
    fn new(lo: f64, hi: f64) -> Cell {
        Cell {
            lo,
            hi,
            slot: None,
            f: 0.0,
            norm: 0.0,
            slope: 0.0,
        }
    }

    fn width(&self) -> f64 {
        self.hi - self.lo
    }

    fn centre(&self) -> f64 {
        0.5 * (self.lo + self.hi)
    }
}

/// The state of one image.
#[derive(Clone, Debug, Default)]
struct Image {
    probe_alphas: Vec<f64>,
    probe_f: Vec<f64>,
    cells: Vec<Cell>,
    /// Cells waiting for evaluation in the current round (indices into `cells`).
    pending: Vec<usize>,
    slots_used: usize,
    spent: f64,
    gradient_evaluations: usize,
    forward_evaluations: usize,
    rounds: usize,
    error: f64,
    /// Split: the cut and F there.
    cut: Option<(f64, f64)>,
}

/// The round driver of every placement.
struct Driver {
    config: AdaptiveConfig,
    images: Vec<Image>,
    /// Accumulators per image: one per cell ever evaluated under adaptive placement, whose
    /// refinement zeroes the weight of each cell it splits; one in all for split and IDG, which place
    /// every cell in one round and know its weight then (it goes in the cell's row). On a GPU each
    /// accumulator is written and read in full: with one per point, IDG at batch 1 spent about a
    /// fifth of its time on them on lavapipe (BENCHMARKS.md).
    slots: usize,
    /// Cells per image at most: the budget's worth.
    cells: usize,
}

/// Splits [lo, hi] into `n` cells of equal mass under a density that is constant on each interval of
/// `edges` (which span [0, 1]).
fn cells_from_density(edges: &[f64], density: &[f64], n: usize, lo: f64, hi: f64) -> Vec<Cell> {
    let mass: Vec<f64> = density
        .iter()
        .zip(edges.windows(2))
        .map(|(d, w)| d * (w[1].min(hi) - w[0].max(lo)).max(0.0))
        .collect();
    let total: f64 = mass.iter().sum();
    let mut bounds = vec![lo];
    let (mut acc, mut j) = (0.0, 0);
    for k in 1..n {
        let target = total * k as f64 / n as f64;
        while j + 1 < mass.len() && acc + mass[j] < target {
            acc += mass[j];
            j += 1;
        }
        let (a, b) = (edges[j].max(lo), edges[j + 1].min(hi));
        let frac = if mass[j] > 0.0 {
            ((target - acc) / mass[j]).clamp(0.0, 1.0)
        } else {
            0.5
        };
        let edge = (a + frac * (b - a)).max(*bounds.last().unwrap());
        bounds.push(edge);
    }
    bounds.push(hi);
    bounds.windows(2).map(|w| Cell::new(w[0], w[1])).collect()
}

/// The first alpha at which the probe's F (linearly interpolated) reaches `level`, going from F(b)
/// towards F(x).
fn first_crossing(alphas: &[f64], f: &[f64], level: f64) -> f64 {
    let up = f.last().unwrap() >= &f[0];
    let reached = |v: f64| if up { v >= level } else { v <= level };
    for k in 1..f.len() {
        if reached(f[k]) {
            let (f0, f1) = (f[k - 1], f[k]);
            let t = if f1 != f0 {
                ((level - f0) / (f1 - f0)).clamp(0.0, 1.0)
            } else {
                1.0
            };
            return alphas[k - 1] + t * (alphas[k] - alphas[k - 1]);
        }
    }
    1.0
}

impl Driver {
    /// Lays out an image's first cells from its probe.
    fn place(&self, image: &mut Image) {
        let (a, f) = (&image.probe_alphas, &image.probe_f);
        let w = self.config.probe_weight;
        let density: Vec<f64> = if self.config.merges_probe() {
            // F is not known yet, and not needed: uniform cells.
            vec![1.0; a.len() - 1]
        } else {
            let changes: Vec<f64> = f
                .windows(2)
                .zip(a.windows(2))
                .map(|(f, a)| (f[1] - f[0]).abs() / (a[1] - a[0]))
                .collect();
            let mean = changes.iter().sum::<f64>() / changes.len() as f64;
            changes
                .iter()
                .map(|c| (1.0 - w) + if mean > 0.0 { w * c / mean } else { w })
                .collect()
        };
        let budget = self.config.cell_budget();
        let first = match self.config.placement {
            Placement::Adaptive if self.config.first_round < 1.0 => {
                ((budget as f64 * self.config.first_round).floor() as usize).max(2)
            }
            _ => budget,
        };
        image.cells = match self.config.placement {
            Placement::Split { ratio } => {
                let (f0, f1) = (f[0], *f.last().unwrap());
                let level = f0 + ratio * (f1 - f0);
                let cut = first_crossing(a, f, level).clamp(1e-6, 1.0 - 1e-6);
                image.cut = Some((cut, level));
                // Cells on each side in proportion to its length, at least one each.
                let left = ((first as f64 * cut).round() as usize).clamp(1, first - 1);
                let mut cells = cells_from_density(a, &density, left, 0.0, cut);
                cells.extend(cells_from_density(a, &density, first - left, cut, 1.0));
                cells
            }
            _ => cells_from_density(a, &density, first, 0.0, 1.0),
        };
        image.pending = (0..image.cells.len()).collect();
    }

    /// The mismatch of the linear models of F at each interior edge, and at 0 and 1 against the probe.
    fn edge_mismatches(image: &Image) -> Vec<f64> {
        let c = &image.cells;
        let n = c.len();
        let mut e = Vec::with_capacity(n + 1);
        let f0 = image.probe_f[0];
        let f1 = *image.probe_f.last().unwrap();
        e.push((c[0].f - c[0].slope * c[0].width() / 2.0 - f0).abs());
        for k in 0..n - 1 {
            let left = c[k].f + c[k].slope * c[k].width() / 2.0;
            let right = c[k + 1].f - c[k + 1].slope * c[k + 1].width() / 2.0;
            e.push((left - right).abs());
        }
        e.push((c[n - 1].f + c[n - 1].slope * c[n - 1].width() / 2.0 - f1).abs());
        e
    }

    /// Updates the error estimate and, if budget and tolerance call for it, marks cells to split.
    fn refine(&self, image: &mut Image) {
        let e = Driver::edge_mismatches(image);
        let scale = (image.probe_f.last().unwrap() - image.probe_f[0])
            .abs()
            .max(1e-12);
        image.error = e.iter().map(|v| v * v).sum::<f64>().sqrt() / scale;
        if self.config.placement != Placement::Adaptive
            || self.config.tolerance.is_some_and(|t| image.error <= t)
        {
            return;
        }
        let splits = self.splits_left(image);
        if splits == 0 {
            return;
        }
        // Split the cells with the largest mismatches at their edges, a few per round.
        let per_round =
            splits.min(((image.cells.len() as f64 * self.config.split_share) as usize).max(1));
        let mut order: Vec<usize> = (0..image.cells.len()).collect();
        let score = |k: usize| e[k] + e[k + 1];
        order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
        let mut split: Vec<usize> = order
            .into_iter()
            .take(per_round)
            .filter(|&k| score(k) > 0.0)
            .collect();
        split.sort_unstable();
        let mut cells = Vec::with_capacity(image.cells.len() + split.len());
        let mut pending = Vec::new();
        for (k, c) in image.cells.iter().enumerate() {
            if split.binary_search(&k).is_ok() {
                let m = c.centre();
                for (lo, hi) in [(c.lo, m), (m, c.hi)] {
                    pending.push(cells.len());
                    cells.push(Cell::new(lo, hi));
                }
            } else {
                cells.push(c.clone());
            }
        }
        image.cells = cells;
        image.pending = pending;
    }

    /// How many cells the budget left can still split.
    fn splits_left(&self, image: &Image) -> usize {
        let left = self.config.budget - image.spent;
        ((left / (2.0 * CELL_COST) + 1e-9).floor() as usize).min(image.cells.len())
    }

    fn plan(&mut self, image: usize) -> PathPlan {
        let soft = self.config.placement != Placement::Idg;
        let cost = self.config.point_cost();
        let single = self.slots == 1;
        let im = &self.images[image];
        let weights: Vec<f64> = im
            .pending
            .iter()
            .map(|&k| {
                if single {
                    self.weight(im, &im.cells[k])
                } else {
                    1.0
                }
            })
            .collect();
        let im = &mut self.images[image];
        let mut alphas = Vec::new();
        let mut cells = Vec::new();
        let mut slots = Vec::new();
        for &k in &im.pending {
            let slot = if single { 0 } else { im.slots_used };
            im.slots_used += 1;
            im.cells[k].slot = Some(slot);
            alphas.push(im.cells[k].centre());
            if soft {
                cells.push(im.cells[k].width());
            }
            slots.push(slot);
        }
        // Split measures F at the cut with its first cells.
        let forward: Vec<f64> = match im.cut {
            Some((cut, _)) if im.gradient_evaluations == 0 => vec![cut],
            _ => Vec::new(),
        };
        if !alphas.is_empty() {
            im.rounds += 1;
        }
        im.spent += alphas.len() as f64 * cost + forward.len() as f64 * FORWARD_COST;
        im.gradient_evaluations += alphas.len();
        im.forward_evaluations += forward.len();
        PathPlan {
            gradient: Quadrature { alphas, weights },
            cells,
            slots,
            forward,
        }
    }

    /// The weight of a cell's accumulator in the attribution.
    fn weight(&self, image: &Image, cell: &Cell) -> f64 {
        match (self.config.placement, image.cut) {
            (Placement::Split { .. }, Some((cut, _))) if cell.hi > cut + 1e-12 => 0.0,
            _ => cell.width(),
        }
    }
}

impl RoundDriver for Driver {
    fn next(
        &mut self,
        images: Range<usize>,
        last: Option<&Evaluation>,
    ) -> Result<Option<Vec<PathPlan>>> {
        let Some(last) = last else {
            // Round one: the probe.
            let n = self.config.probes;
            let probe: Vec<f64> = (0..n).map(|k| k as f64 / (n - 1) as f64).collect();
            let merged = self.config.merges_probe();
            for i in images.clone() {
                let im = &mut self.images[i];
                im.probe_alphas = probe.clone();
                im.spent = n as f64 * FORWARD_COST;
                im.forward_evaluations = n;
                im.rounds = usize::from(!merged);
            }
            if !merged {
                return Ok(Some(vec![PathPlan::forward(probe); images.len()]));
            }
            // The probe does not shape the cells, so they go with it: one round (submission and
            // read-back) fewer.
            let mut plans = Vec::with_capacity(images.len());
            for i in images {
                let mut im = std::mem::take(&mut self.images[i]);
                self.place(&mut im);
                self.images[i] = im;
                let mut plan = self.plan(i);
                plan.forward = probe.clone();
                plans.push(plan);
            }
            return Ok(Some(plans));
        };
        let mut plans = Vec::with_capacity(images.len());
        for (local, i) in images.clone().enumerate() {
            let mut im = std::mem::take(&mut self.images[i]);
            if im.probe_f.is_empty() {
                im.probe_f = last.forward_f[local].clone();
                if im.probe_f.iter().any(|v| !v.is_finite()) {
                    return Err(Error::Gpu(format!(
                        "image {i}: F along the path is not finite"
                    )));
                }
            }
            if im.cells.is_empty() {
                self.place(&mut im);
            } else {
                for (j, &k) in im.pending.iter().enumerate() {
                    im.cells[k].f = last.gradient_f[local][j];
                    im.cells[k].norm = last.gradient_norm[local][j];
                    im.cells[k].slope = last.gradient_slope[local][j];
                }
                if let (Some((cut, _)), Some(&f)) = (im.cut, last.forward_f[local].first()) {
                    im.cut = Some((cut, f));
                }
                im.pending.clear();
                self.refine(&mut im);
            }
            self.images[i] = im;
            plans.push(self.plan(i));
        }
        if plans
            .iter()
            .all(|p| p.gradient.is_empty() && p.forward.is_empty())
        {
            return Ok(None);
        }
        Ok(Some(plans))
    }

    fn weights(&mut self, images: Range<usize>) -> Vec<Vec<f64>> {
        if self.slots == 1 {
            // The weights are in the rows.
            return images.map(|_| vec![1.0]).collect();
        }
        images
            .map(|i| {
                let im = &self.images[i];
                let mut w = vec![0.0; self.slots];
                for c in &im.cells {
                    if let Some(s) = c.slot {
                        w[s] = self.weight(im, c);
                    }
                }
                w
            })
            .collect()
    }

    fn final_weights(&mut self, images: Range<usize>) -> Option<Vec<Vec<f64>>> {
        // After the cells' first round only adaptive placement refines, and only while the budget
        // allows a split; the weights are the cells' widths (and the cut), known before the results.
        let last = self.images[images.clone()].iter().all(|im| {
            !im.cells.is_empty()
                && (self.config.placement != Placement::Adaptive || self.splits_left(im) == 0)
        });
        last.then(|| self.weights(images))
    }

    fn max_points(&self) -> usize {
        let cells = self.cells + self.config.extra_forward();
        if self.config.merges_probe() {
            self.config.probes + cells
        } else {
            self.config.probes.max(cells)
        }
    }
}

/// Runs a placement on every image of `batch` within `config.budget` gradient-evaluation
/// equivalents each.
pub fn run(
    backend: &mut dyn Backend,
    batch: &Batch,
    config: &AdaptiveConfig,
) -> Result<Explanation> {
    config.check()?;
    let cells = config.cell_budget().max(2);
    let slots = if config.placement == Placement::Adaptive {
        cells
    } else {
        1
    };
    let mut driver = Driver {
        config: config.clone(),
        images: vec![Image::default(); batch.len()],
        slots,
        cells,
    };
    let idg = config.placement == Placement::Idg;
    let options = RoundOptions {
        slots,
        idg,
        soft: !idg,
    };
    let eval = backend.rounds(batch, options, &mut driver)?;
    let dim = batch.dim;
    let images = driver
        .images
        .iter()
        .enumerate()
        .map(|(i, im)| {
            report(
                config,
                batch,
                i,
                im,
                &eval.attributions[i * dim..(i + 1) * dim],
                &driver,
            )
        })
        .collect();
    Ok(Explanation {
        values: eval.attributions,
        images,
        stats: eval.stats,
    })
}

fn report(
    config: &AdaptiveConfig,
    batch: &Batch,
    i: usize,
    im: &Image,
    values: &[f64],
    driver: &Driver,
) -> Report {
    let f_input = *im.probe_f.last().unwrap_or(&0.0);
    let f_baseline = *im.probe_f.first().unwrap_or(&0.0);
    let attribution_sum: f64 = values.iter().sum();
    let cells = &im.cells;
    let path = PathReport {
        alphas: cells.iter().map(Cell::centre).collect(),
        weights: cells.iter().map(|c| driver.weight(im, c)).collect(),
        f: cells.iter().map(|c| c.f).collect(),
        grad_norm: cells.iter().map(|c| c.norm).collect(),
        slope: cells.iter().map(|c| c.slope).collect(),
    };
    let (expected_sum, completeness, split) = match (config.placement, im.cut) {
        (Placement::Split { ratio }, Some((alpha, f_cut))) => {
            let side = |left: bool| -> f64 {
                cells
                    .iter()
                    .filter(|c| (c.hi <= alpha + 1e-12) == left)
                    .map(|c| c.width() * c.slope)
                    .sum()
            };
            let (left_sum, right_sum) = (side(true), side(false));
            let split = SplitReport {
                ratio,
                alpha,
                f_cut,
                left_sum,
                right_sum,
                total_delta: left_sum + right_sum - (f_input - f_baseline),
                left_delta: left_sum - (f_cut - f_baseline),
            };
            (f_cut - f_baseline, "F(cut) - F(b)", Some(split))
        }
        (Placement::Idg, _) => (
            cells.iter().map(|c| c.width() * c.slope * c.slope).sum(),
            "integral of (dF/dalpha)^2",
            None,
        ),
        _ => (f_input - f_baseline, "F(x) - F(b)", None),
    };
    Report {
        image: i,
        target: batch.targets[i],
        method: config.name(),
        f_input,
        f_baseline,
        attribution_sum,
        expected_sum,
        completeness,
        delta: attribution_sum - expected_sum,
        gradient_evaluations: im.gradient_evaluations,
        forward_evaluations: im.forward_evaluations,
        budget_spent: im.spent,
        rounds: im.rounds,
        error_estimate: (config.placement == Placement::Adaptive).then_some(im.error),
        path,
        cells: if config.placement == Placement::Idg {
            Vec::new()
        } else {
            cells.iter().map(Cell::width).collect()
        },
        probe: Some(Probe {
            alphas: im.probe_alphas.clone(),
            f: im.probe_f.clone(),
        }),
        split,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_cells_partition_the_path() {
        let edges = [0.0, 0.25, 0.5, 1.0];
        let cells = cells_from_density(&edges, &[3.0, 1.0, 1.0], 8, 0.0, 1.0);
        assert_eq!(cells.len(), 8);
        assert_eq!(cells[0].lo, 0.0);
        assert_eq!(cells[7].hi, 1.0);
        assert!(
            cells
                .windows(2)
                .all(|w| w[0].hi == w[1].lo && w[0].width() > 0.0)
        );
        // Half the mass lies in [0, 0.25]: four cells there.
        assert!((cells[3].hi - 0.25).abs() < 1e-12, "{cells:?}");
        // A sub-range is partitioned too.
        let part = cells_from_density(&edges, &[4.0, 1.0, 1.0], 3, 0.3, 0.9);
        assert_eq!((part[0].lo, part[2].hi), (0.3, 0.9));
        assert!(
            part.iter().all(|c| (c.width() - 0.2).abs() < 1e-12),
            "{part:?}"
        );
    }

    #[test]
    fn crossing_interpolates_and_follows_the_direction() {
        let a = [0.0, 0.5, 1.0];
        assert!((first_crossing(&a, &[0.0, 1.0, 2.0], 1.5) - 0.75).abs() < 1e-12);
        assert!((first_crossing(&a, &[2.0, 0.0, -2.0], 1.0) - 0.25).abs() < 1e-12);
        // The first crossing, not the last.
        assert!((first_crossing(&a, &[0.0, 2.0, 1.0], 1.0) - 0.25).abs() < 1e-12);
    }
}
