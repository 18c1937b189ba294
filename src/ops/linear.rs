//! Linear: CPU twin of shaders/linear_forward.wgsl and shaders/linear_backward.wgsl.
//!
//! Weights are `[out, in]` as in PyTorch.

use super::Params64;
use crate::model::Linear;

pub fn forward(l: &Linear, p: &Params64, x: &[f64]) -> Vec<f64> {
    (0..l.out_features)
        .map(|o| {
            let row = &p.weight[o * l.in_features..(o + 1) * l.in_features];
            row.iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + p.bias(o)
        })
        .collect()
}

pub fn backward(l: &Linear, p: &Params64, gout: &[f64]) -> Vec<f64> {
    (0..l.in_features)
        .map(|i| {
            (0..l.out_features)
                .map(|o| p.weight[o * l.in_features + i] * gout[o])
                .sum()
        })
        .collect()
}

/// Gradients of the weights and bias for one sample: dW = gout x^T, db = gout.
pub fn weight_grad(l: &Linear, x: &[f64], gout: &[f64]) -> Params64 {
    let weight = gout
        .iter()
        .flat_map(|g| x.iter().map(move |v| g * v))
        .collect();
    let bias = if l.bias { gout.to_vec() } else { Vec::new() };
    Params64 { weight, bias }
}
