//! The CPU reference: the whole model forward and backward in f64, one sample at a time.
//!
//! It is the oracle of the tests and `--backend cpu` of the CLI; images run in parallel (rayon), each
//! image's points in order, so results do not depend on the thread count.

use crate::backend::{Backend, Batch, Evaluation, RunStats, check_plans, probe_weight};
use crate::error::Result;
use crate::model::Model;
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
struct ImageResult {
    attribution: Vec<f64>,
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
        let dim = batch.dim;
        let per_image: Vec<ImageResult> = (0..batch.len())
            .into_par_iter()
            .map(|i| {
                let x: Vec<f64> = batch.inputs[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let b: Vec<f64> = batch.baselines[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let target = batch.targets[i];
                let plan = &plans[i];
                let mut total = vec![0.0; dim];
                let mut gradient_f = Vec::new();
                let mut gradient_norm = Vec::new();
                let mut gradient_slope = Vec::new();
                let mut gradient_probe = Vec::new();
                for (&alpha, &weight) in plan.gradient.alphas.iter().zip(&plan.gradient.weights) {
                    let (f, g) = self.gradient(&path_point(&x, &b, alpha), target);
                    for (t, g) in total.iter_mut().zip(&g) {
                        *t += weight * g;
                    }
                    gradient_f.push(f);
                    gradient_norm.push(g.iter().map(|v| v * v).sum::<f64>().sqrt());
                    gradient_slope.push(
                        g.iter()
                            .zip(x.iter().zip(&b))
                            .map(|(g, (x, b))| g * (x - b))
                            .sum(),
                    );
                    gradient_probe
                        .push(g.iter().enumerate().map(|(d, g)| g * probe_weight(d)).sum());
                }
                let forward_f = plan
                    .forward
                    .iter()
                    .map(|&alpha| self.forward(&path_point(&x, &b, alpha)).pop().unwrap()[target])
                    .collect();
                let attribution = total
                    .iter()
                    .zip(x.iter().zip(&b))
                    .map(|(t, (x, b))| (x - b) * t)
                    .collect();
                ImageResult {
                    attribution,
                    gradient_f,
                    gradient_norm,
                    gradient_slope,
                    gradient_probe,
                    forward_f,
                }
            })
            .collect();
        let mut out = Evaluation::zeros(plans, dim);
        for (i, r) in per_image.into_iter().enumerate() {
            out.attributions[i * dim..(i + 1) * dim].copy_from_slice(&r.attribution);
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
