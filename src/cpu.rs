//! The CPU reference: the whole model forward and backward in f64, one sample at a time.
//!
//! It is the oracle of the tests and `--backend cpu` of the CLI; images run in parallel (rayon), each
//! image's points in order, so results do not depend on the thread count.

use crate::backend::{
    Backend, Batch, Evaluation, RoundDriver, RoundOptions, RunStats, check_plans, check_slots,
    probe_weight,
};
use crate::error::{Error, Result};
use crate::model::{Layer, Model};
use crate::ops::{self, Params64};
use crate::schedule::PathPlan;
use rayon::prelude::*;

pub struct CpuBackend {
    model: Model,
    params: Vec<Option<Params64>>,
}

impl CpuBackend {
    pub fn new(model: &Model) -> CpuBackend {
        let params = (0..model.layers().len())
            .map(|i| model.params(i).map(Params64::from))
            .collect();
        CpuBackend {
            model: model.clone(),
            params,
        }
    }

    /// Every activation: `[input, output of layer 0, ..., logits]`.
    pub fn forward(&self, x: &[f64]) -> Vec<Vec<f64>> {
        let shapes = self.model.shapes();
        let mut acts = vec![x.to_vec()];
        for (i, layer) in self.model.layers().iter().enumerate() {
            let next = ops::forward(
                layer,
                shapes[i],
                shapes[i + 1],
                self.params[i].as_ref(),
                &acts[i],
            );
            acts.push(next);
        }
        acts
    }

    /// The logit `target` at `x` and its gradient with respect to `x`.
    pub fn gradient(&self, x: &[f64], target: usize) -> (f64, Vec<f64>) {
        let acts = self.forward(x);
        let shapes = self.model.shapes();
        let layers = self.model.layers();
        let mut grad = vec![0.0; self.model.classes()];
        grad[target] = 1.0;
        for i in (0..layers.len()).rev() {
            grad = ops::backward(
                &layers[i],
                shapes[i],
                shapes[i + 1],
                self.params[i].as_ref(),
                &acts[i],
                &grad,
            );
        }
        (acts[layers.len()][target], grad)
    }
}

impl CpuBackend {
    /// The mean softmax cross-entropy of a batch (`images` holds whole images) and the gradient of every
    /// layer's weights and bias with respect to it: the twin of one training step's backward pass.
    pub fn batch_gradients(&self, images: &[f32], labels: &[u8]) -> (f64, Vec<Option<Params64>>) {
        let dim = self.model.input_len();
        let shapes = self.model.shapes();
        let layers = self.model.layers();
        let n = labels.len();
        let mut total: Vec<Option<Params64>> = layers
            .iter()
            .map(|l| {
                l.param_shapes().map(|(w, b)| Params64 {
                    weight: vec![0.0; w.iter().product()],
                    bias: vec![0.0; b.map_or(0, |b| b[0])],
                })
            })
            .collect();
        let mut loss = 0.0;
        for (r, &label) in labels.iter().enumerate() {
            let x: Vec<f64> = images[r * dim..(r + 1) * dim]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let acts = self.forward(&x);
            let z = &acts[layers.len()];
            let top = z.iter().copied().fold(f64::MIN, f64::max);
            let sum: f64 = z.iter().map(|v| (v - top).exp()).sum();
            loss += sum.ln() + top - z[label as usize];
            let mut grad: Vec<f64> = z
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    ((v - top).exp() / sum - if c == label as usize { 1.0 } else { 0.0 }) / n as f64
                })
                .collect();
            for i in (0..layers.len()).rev() {
                if let Some(g) =
                    ops::weight_grad(&layers[i], shapes[i], shapes[i + 1], &acts[i], &grad)
                {
                    let t = total[i].as_mut().unwrap();
                    t.weight
                        .iter_mut()
                        .zip(&g.weight)
                        .for_each(|(a, b)| *a += b);
                    t.bias.iter_mut().zip(&g.bias).for_each(|(a, b)| *a += b);
                }
                grad = ops::backward(
                    &layers[i],
                    shapes[i],
                    shapes[i + 1],
                    self.params[i].as_ref(),
                    &acts[i],
                    &grad,
                );
            }
        }
        (loss / n as f64, total)
    }
}

/// Each element of a max-pool window (input index) with its share.
type WindowShares = Vec<(usize, f64)>;

/// The forward pass with tangents, and the choices the soft backward pass uses.
struct Trace {
    /// `[input, output of layer 0, ..., logits]`.
    acts: Vec<Vec<f64>>,
    /// Derivative of each activation along the path (per unit alpha).
    tangents: Vec<Vec<f64>>,
    /// Per ReLU not absorbed by a max-pool: each element's open share of the cell.
    relu_shares: Vec<Option<Vec<f64>>>,
    /// Per max-pool: for each output, (input index, share) of every element of its window.
    pool_shares: Vec<Option<Vec<WindowShares>>>,
}

impl CpuBackend {
    /// Whether ReLU i feeds a max-pool, which then takes the ReLU's place in the soft choices (the
    /// window's lines are the ReLU's inputs, with the zero line).
    fn absorbed(&self, i: usize) -> bool {
        let l = self.model.layers();
        l[i] == Layer::Relu && matches!(l.get(i + 1), Some(Layer::MaxPool2d(_)))
    }

    /// The forward pass at `x` with tangents along `dx` and the choices over the cell of half-width
    /// `half` (in alpha) around x.
    fn trace(&self, x: &[f64], dx: &[f64], half: f64) -> Trace {
        let shapes = self.model.shapes();
        let layers = self.model.layers();
        let n = layers.len();
        let mut t = Trace {
            acts: vec![x.to_vec()],
            tangents: vec![dx.to_vec()],
            relu_shares: vec![None; n],
            pool_shares: vec![None; n],
        };
        for (i, layer) in layers.iter().enumerate() {
            let (a, d) = (&t.acts[i], &t.tangents[i]);
            let out = ops::forward(layer, shapes[i], shapes[i + 1], self.params[i].as_ref(), a);
            let tangent = match layer {
                Layer::Relu => {
                    if !self.absorbed(i) {
                        let s = a
                            .iter()
                            .zip(d)
                            .map(|(&z, &dz)| ops::soft::shares(&[z], &[dz], half, true)[0]);
                        t.relu_shares[i] = Some(s.collect());
                    }
                    a.iter()
                        .zip(d)
                        .map(|(&z, &dz)| if z > 0.0 { dz } else { 0.0 })
                        .collect()
                }
                Layer::MaxPool2d(p) => {
                    // Lines of the window: the ReLU's inputs when it feeds this pool, else this input.
                    let relu = i > 0 && self.absorbed(i - 1);
                    let (lv, ld) = if relu {
                        (&t.acts[i - 1], &t.tangents[i - 1])
                    } else {
                        (a, d)
                    };
                    let mut windows: Vec<Vec<usize>> = vec![Vec::new(); shapes[i + 1].len()];
                    ops::pool::windows(p, shapes[i].chw(), shapes[i + 1].chw(), |o, j| {
                        windows[o].push(j)
                    });
                    let shares: Vec<WindowShares> = windows
                        .iter()
                        .map(|w| {
                            let v: Vec<f64> = w.iter().map(|&j| lv[j]).collect();
                            let vd: Vec<f64> = w.iter().map(|&j| ld[j]).collect();
                            w.iter()
                                .copied()
                                .zip(ops::soft::shares(&v, &vd, half, relu))
                                .collect()
                        })
                        .collect();
                    // The tangent is the mean slope of the maximum over the cell: each line's
                    // slope by its share.
                    let tangent = shares
                        .iter()
                        .map(|w| w.iter().map(|&(j, s)| s * ld[j]).sum())
                        .collect();
                    t.pool_shares[i] = Some(shares);
                    tangent
                }
                // Linear layers carry tangents without their bias.
                _ => {
                    let p = self.params[i].as_ref().map(Params64::without_bias);
                    ops::forward(layer, shapes[i], shapes[i + 1], p.as_ref(), d)
                }
            };
            t.acts.push(out);
            t.tangents.push(tangent);
        }
        t
    }

    /// The logit `target` at `x` and its gradient over the cell of path points `x + t dx`, with
    /// `|t| <= cell / 2`: the gradient with every ReLU mask and max-pool choice replaced by its share of
    /// the cell. A cell of 0 gives the ordinary gradient at `x`.
    pub fn cell_gradient(
        &self,
        x: &[f64],
        dx: &[f64],
        cell: f64,
        target: usize,
    ) -> (f64, Vec<f64>) {
        let t = self.trace(x, dx, cell / 2.0);
        (
            t.acts[self.model.layers().len()][target],
            self.backward(&t, target),
        )
    }

    /// The gradient of logit `target` through a trace's (shared) choices.
    fn backward(&self, t: &Trace, target: usize) -> Vec<f64> {
        let shapes = self.model.shapes();
        let layers = self.model.layers();
        let mut grad = vec![0.0; self.model.classes()];
        grad[target] = 1.0;
        for i in (0..layers.len()).rev() {
            grad = match &layers[i] {
                Layer::Relu => match &t.relu_shares[i] {
                    Some(s) => grad.iter().zip(s).map(|(g, s)| g * s).collect(),
                    None => grad,
                },
                Layer::MaxPool2d(_) => {
                    let mut gin = vec![0.0; shapes[i].len()];
                    for (o, w) in t.pool_shares[i].as_ref().unwrap().iter().enumerate() {
                        for &(j, s) in w {
                            gin[j] += s * grad[o];
                        }
                    }
                    gin
                }
                layer => ops::backward(
                    layer,
                    shapes[i],
                    shapes[i + 1],
                    self.params[i].as_ref(),
                    &t.acts[i],
                    &grad,
                ),
            };
        }
        grad
    }

    /// How far (in alpha, along the trace's tangents) the network stays linear: the nearest positive
    /// offset at which a ReLU's input crosses zero or another element overtakes a max-pool window's
    /// maximum. Infinity if none does.
    fn linear_reach(&self, t: &Trace) -> f64 {
        let shapes = self.model.shapes();
        let mut reach = f64::INFINITY;
        for (i, layer) in self.model.layers().iter().enumerate() {
            let (v, d) = (&t.acts[i], &t.tangents[i]);
            match layer {
                Layer::Relu => {
                    for (&z, &dz) in v.iter().zip(d) {
                        let s = -z / dz;
                        if s > 0.0 {
                            reach = reach.min(s);
                        }
                    }
                }
                Layer::MaxPool2d(p) => {
                    let best = ops::pool::argmax(p, shapes[i].chw(), shapes[i + 1].chw(), v);
                    ops::pool::windows(p, shapes[i].chw(), shapes[i + 1].chw(), |o, k| {
                        let m = best[o];
                        if d[k] > d[m] {
                            reach = reach.min(((v[m] - v[k]) / (d[k] - d[m])).max(0.0));
                        }
                    });
                }
                _ => {}
            }
        }
        reach
    }

    /// Exact IG of logit `target` from `b` to `x` for a network whose layers are all piecewise linear
    /// (every layer gig supports): the path is walked from one linear piece to the next, and each
    /// piece's constant gradient is weighted by its length. Returns the attributions and the number of
    /// pieces. This is the reference that quadrature errors are measured against.
    pub fn exact_ig(&self, x: &[f64], b: &[f64], target: usize) -> Result<(Vec<f64>, usize)> {
        // Each piece is traced a hair past its start, so the choices are the piece's own and not a
        // tie at the kink.
        const NUDGE: f64 = 1e-10;
        const MAX_PIECES: usize = 1_000_000;
        let dx: Vec<f64> = x.iter().zip(b).map(|(x, b)| x - b).collect();
        let mut total = vec![0.0; dx.len()];
        let (mut start, mut pieces) = (0.0, 0);
        while start < 1.0 {
            if pieces == MAX_PIECES {
                return Err(Error::Input(format!(
                    "exact IG: more than {MAX_PIECES} linear pieces along the path"
                )));
            }
            let inside = (start + NUDGE).min(1.0);
            let t = self.trace(&path_point(x, b, inside), &dx, 0.0);
            let end = (inside + self.linear_reach(&t)).min(1.0);
            let g = self.backward(&t, target);
            for (s, g) in total.iter_mut().zip(&g) {
                *s += (end - start) * g;
            }
            start = end;
            pieces += 1;
        }
        Ok((total.iter().zip(&dx).map(|(s, d)| s * d).collect(), pieces))
    }

    /// One image's points: diagnostics, and each gradient point's weighted gradient added to its
    /// accumulator (times dF/dalpha with `idg`).
    fn run_image(
        &self,
        x: &[f64],
        b: &[f64],
        target: usize,
        plan: &PathPlan,
        idg: bool,
        acc: &mut [Vec<f64>],
    ) -> ImageResult {
        let dx: Vec<f64> = x.iter().zip(b).map(|(x, b)| x - b).collect();
        let mut r = ImageResult::default();
        for k in 0..plan.gradient.len() {
            let (alpha, weight) = (plan.gradient.alphas[k], plan.gradient.weights[k]);
            let (f, g) = self.cell_gradient(&path_point(x, b, alpha), &dx, plan.cell(k), target);
            let slope: f64 = g.iter().zip(&dx).map(|(g, d)| g * d).sum();
            let w = if idg { weight * slope } else { weight };
            let slot = if acc.len() > 1 { plan.slot(k) } else { 0 };
            for (t, g) in acc[slot].iter_mut().zip(&g) {
                *t += w * g;
            }
            r.gradient_f.push(f);
            r.gradient_norm
                .push(g.iter().map(|v| v * v).sum::<f64>().sqrt());
            r.gradient_slope.push(slope);
            r.gradient_probe
                .push(g.iter().enumerate().map(|(d, g)| g * probe_weight(d)).sum());
        }
        r.forward_f = plan
            .forward
            .iter()
            .map(|&alpha| self.forward(&path_point(x, b, alpha)).pop().unwrap()[target])
            .collect();
        r
    }

    /// Runs the plans of images `images` in parallel into their accumulators; returns the diagnostics.
    fn run(
        &self,
        batch: &Batch,
        images: std::ops::Range<usize>,
        plans: &[PathPlan],
        idg: bool,
        acc: &mut [Vec<Vec<f64>>],
    ) -> Evaluation {
        let dim = batch.dim;
        let results: Vec<ImageResult> = acc
            .par_iter_mut()
            .enumerate()
            .map(|(i, acc)| {
                let k = images.start + i;
                let x: Vec<f64> = batch.inputs[k * dim..(k + 1) * dim]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let b: Vec<f64> = batch.baselines[k * dim..(k + 1) * dim]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                self.run_image(&x, &b, batch.targets[k], &plans[i], idg, acc)
            })
            .collect();
        let mut out = Evaluation::zeros(plans, dim);
        for (i, r) in results.into_iter().enumerate() {
            out.gradient_f[i] = r.gradient_f;
            out.gradient_norm[i] = r.gradient_norm;
            out.gradient_slope[i] = r.gradient_slope;
            out.gradient_probe[i] = r.gradient_probe;
            out.forward_f[i] = r.forward_f;
        }
        out.stats = RunStats {
            backend: "cpu".into(),
            device: self.device(),
            gradient_rows: plans.iter().map(|p| p.gradient.len()).sum(),
            forward_rows: plans.iter().map(|p| p.forward.len()).sum(),
            ..RunStats::default()
        };
        out
    }

    /// (x - b) times the weighted sum of image k's accumulators.
    fn attribution(batch: &Batch, k: usize, acc: &[Vec<f64>], weights: &[f64]) -> Vec<f64> {
        let dim = batch.dim;
        (0..dim)
            .map(|d| {
                let sum: f64 = acc.iter().zip(weights).map(|(a, w)| w * a[d]).sum();
                (f64::from(batch.inputs[k * dim + d]) - f64::from(batch.baselines[k * dim + d]))
                    * sum
            })
            .collect()
    }
}

/// b + alpha (x - b), with alpha = 1 giving x exactly (as the GPU's path kernel does).
pub fn path_point(x: &[f64], b: &[f64], alpha: f64) -> Vec<f64> {
    if alpha == 1.0 {
        return x.to_vec();
    }
    x.iter()
        .zip(b)
        .map(|(&x, &b)| b + alpha * (x - b))
        .collect()
}

/// One image's share of an [`Evaluation`].
#[derive(Default)]
struct ImageResult {
    gradient_f: Vec<f64>,
    gradient_norm: Vec<f64>,
    gradient_slope: Vec<f64>,
    gradient_probe: Vec<f64>,
    forward_f: Vec<f64>,
}

impl Backend for CpuBackend {
    fn model(&self) -> &Model {
        &self.model
    }

    fn evaluate(&mut self, batch: &Batch, plans: &[PathPlan]) -> Result<Evaluation> {
        check_plans(batch, plans)?;
        let mut acc = vec![vec![vec![0.0; batch.dim]]; batch.len()];
        let mut out = self.run(batch, 0..batch.len(), plans, false, &mut acc);
        for (k, a) in acc.iter().enumerate() {
            let v = CpuBackend::attribution(batch, k, a, &[1.0]);
            out.attributions[k * batch.dim..(k + 1) * batch.dim].copy_from_slice(&v);
        }
        Ok(out)
    }

    fn rounds(
        &mut self,
        batch: &Batch,
        options: RoundOptions,
        driver: &mut dyn RoundDriver,
    ) -> Result<Evaluation> {
        let dim = batch.dim;
        let (slots, idg) = (options.slots.max(1), options.idg);
        let mut out = Evaluation::zeros(&vec![PathPlan::forward(Vec::new()); batch.len()], dim);
        out.stats = RunStats {
            backend: "cpu".into(),
            device: self.device(),
            ..RunStats::default()
        };
        // Groups bound the accumulators' memory, as on the GPU.
        let per_group = ((64 << 20) / (8 * dim * slots).max(1)).max(1);
        for start in (0..batch.len()).step_by(per_group) {
            let group = start..(start + per_group).min(batch.len());
            let mut acc = vec![vec![vec![0.0; dim]; slots]; group.len()];
            let mut last: Option<Evaluation> = None;
            out.stats.groups += 1;
            while let Some(plans) = driver.next(group.clone(), last.as_ref())? {
                if plans.len() != group.len() {
                    return Err(Error::Input(format!(
                        "{} plans for {} images",
                        plans.len(),
                        group.len()
                    )));
                }
                check_slots(&plans, slots)?;
                let eval = self.run(batch, group.clone(), &plans, idg, &mut acc);
                out.stats.gradient_rows += eval.stats.gradient_rows;
                out.stats.forward_rows += eval.stats.forward_rows;
                last = Some(eval);
            }
            let weights = driver.weights(group.clone());
            for (i, k) in group.clone().enumerate() {
                let v = CpuBackend::attribution(batch, k, &acc[i], &weights[i]);
                out.attributions[k * dim..(k + 1) * dim].copy_from_slice(&v);
            }
        }
        Ok(out)
    }

    fn logits(&mut self, inputs: &[f32]) -> Result<Vec<Vec<f64>>> {
        let dim = self.model.input_len();
        crate::backend::check_finite("inputs", inputs, dim)?;
        Ok(inputs
            .par_chunks(dim)
            .map(|x| {
                let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                self.forward(&x).pop().unwrap()
            })
            .collect())
    }

    fn device(&self) -> String {
        "cpu (f64)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::CpuBackend;
    use crate::model::Model;

    /// Over a cell the maximum of lines is piecewise linear, so its mean slope is its secant: the
    /// soft max-pool's tangent must be (max at +half - max at -half) / (2 half), and with a ReLU before
    /// the pool the same for max(0, lines).
    #[test]
    fn a_soft_max_pool_carries_the_secant_slope_of_its_maximum() {
        let secant = |v: &[f64], d: &[f64], h: f64, relu: bool| {
            let max = |t: f64| {
                let m = v.iter().zip(d).map(|(v, d)| v + d * t);
                m.fold(if relu { 0.0 } else { f64::MIN }, f64::max)
            };
            (max(h) - max(-h)) / (2.0 * h)
        };
        let (v, d, h) = ([0.0, 0.1, -0.1, -1.0], [1.0, -1.0, 2.0, 0.0], 0.5);
        let pool = CpuBackend::new(
            &Model::random_from_arch("maxpool2 flatten linear(1,1)", [1, 2, 2], 1).unwrap(),
        );
        let t = pool.trace(&v, &d, h);
        assert!((t.tangents[1][0] - secant(&v, &d, h, false)).abs() < 1e-12);
        // The winner at the centre (0.1) falls, but the mean slope over the cell is positive.
        assert!(t.tangents[1][0] > 0.0);

        let relu_pool = CpuBackend::new(
            &Model::random_from_arch("relu maxpool2 flatten linear(1,1)", [1, 2, 2], 1).unwrap(),
        );
        let (v, d) = ([-0.2, -0.15, -0.3, -1.0], [0.5, -0.1, 1.0, 0.0]);
        let t = relu_pool.trace(&v, &d, h);
        let want = secant(&v, &d, h, true);
        assert!(want > 0.0, "{want}");
        assert!(
            (t.tangents[2][0] - want).abs() < 1e-12,
            "{} {want}",
            t.tangents[2][0]
        );
        // At half-width 0 the tangent is the slope of the maximum at the point.
        let d = [1.0, -1.0, 2.0, 0.0];
        assert_eq!(
            pool.trace(&[0.0, 0.1, -0.1, -1.0], &d, 0.0).tangents[1][0],
            -1.0
        );
    }
}
