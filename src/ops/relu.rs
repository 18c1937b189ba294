//! ReLU: CPU twin of shaders/relu_forward.wgsl and shaders/relu_backward.wgsl.
//!
//! The derivative at 0 is 0, as in PyTorch.

pub fn forward(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

pub fn backward(x: &[f64], gout: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(gout)
        .map(|(&v, &g)| if v > 0.0 { g } else { 0.0 })
        .collect()
}
