//! Optimizers as PyTorch defines them (torch.optim.SGD with momentum, torch.optim.Adam), the learning-rate
//! schedule, and the CPU twin of one update (f64) that the GPU kernels sgd.wgsl and adam.wgsl are tested
//! against.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// p -= lr * v with v = momentum * v + (g + weight_decay * p) (dampening 0, v = g at the first step).
    Sgd { momentum: f64, weight_decay: f64 },
    /// Adam with L2 weight decay added to the gradient (not AdamW).
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

impl Optimizer {
    /// `adam` (betas 0.9, 0.999, eps 1e-8) or `sgd` (momentum 0.9), PyTorch's defaults otherwise.
    pub fn parse(name: &str) -> Result<Optimizer> {
        match name {
            "adam" => Ok(Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            }),
            "sgd" => Ok(Optimizer::Sgd {
                momentum: 0.9,
                weight_decay: 0.0,
            }),
            other => Err(Error::Input(format!(
                "unknown optimizer `{other}`; expected adam or sgd"
            ))),
        }
    }

    /// State vectors per parameter: SGD keeps the velocity, Adam two moments.
    pub fn moments(&self) -> usize {
        match self {
            Optimizer::Sgd { .. } => 1,
            Optimizer::Adam { .. } => 2,
        }
    }

    /// One update of `params` at step `t` (counted from 1), in f64.
    pub fn update(
        &self,
        params: &mut [f64],
        grads: &[f64],
        state: &mut [Vec<f64>],
        t: usize,
        lr: f64,
    ) {
        match *self {
            Optimizer::Sgd {
                momentum,
                weight_decay,
            } => {
                let v = &mut state[0];
                for i in 0..params.len() {
                    let g = grads[i] + weight_decay * params[i];
                    v[i] = if t > 1 { momentum * v[i] + g } else { g };
                    params[i] -= lr * v[i];
                }
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let (c1, c2) = (1.0 - beta1.powi(t as i32), 1.0 - beta2.powi(t as i32));
                let (m1, rest) = state.split_at_mut(1);
                let (m, v) = (&mut m1[0], &mut rest[0]);
                for i in 0..params.len() {
                    let g = grads[i] + weight_decay * params[i];
                    m[i] = beta1 * m[i] + (1.0 - beta1) * g;
                    v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
                    params[i] -= (lr / c1) * m[i] / (v[i].sqrt() / c2.sqrt() + eps);
                }
            }
        }
    }
}

/// Cosine decay from `lr` to 0 over `total` steps, as torch.optim.lr_scheduler.CosineAnnealingLR(T_max =
/// total) stepped after every batch: the learning rate of step `t` (counted from 0).
pub fn cosine(lr: f64, t: usize, total: usize) -> f64 {
    lr * 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / total.max(1) as f64).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr() {
        // With bias correction Adam's first step is lr * sign(g) (up to eps).
        let opt = Optimizer::parse("adam").unwrap();
        let mut p = vec![1.0, 1.0];
        let mut state = vec![vec![0.0; 2]; 2];
        opt.update(&mut p, &[0.5, -2.0], &mut state, 1, 0.1);
        assert!(
            (p[0] - 0.9).abs() < 1e-7 && (p[1] - 1.1).abs() < 1e-7,
            "{p:?}"
        );
    }

    #[test]
    fn sgd_momentum_accumulates() {
        let opt = Optimizer::parse("sgd").unwrap();
        let mut p = vec![0.0];
        let mut state = vec![vec![0.0]];
        opt.update(&mut p, &[1.0], &mut state, 1, 0.1);
        opt.update(&mut p, &[1.0], &mut state, 2, 0.1);
        // v = 1, then 0.9 + 1 = 1.9: p = -0.1 - 0.19
        assert!((p[0] + 0.29).abs() < 1e-12);
        assert!(Optimizer::parse("rmsprop").is_err());
    }

    #[test]
    fn cosine_schedule_ends_at_zero() {
        assert_eq!(cosine(1.0, 0, 10), 1.0);
        assert!((cosine(1.0, 5, 10) - 0.5).abs() < 1e-12);
        assert!(cosine(1.0, 10, 10).abs() < 1e-12);
    }
}
