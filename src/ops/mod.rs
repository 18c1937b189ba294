//! The layers' arithmetic on the CPU in f64: the twin of every GPU kernel and the oracle of the tests.
//!
//! Each op works on one sample. `forward` maps the layer's input to its output; `backward` maps the
//! gradient of the output to the gradient of the input (the vector-Jacobian product at `x`);
//! `weight_grad` gives the gradient of the layer's weights and bias.

pub mod conv2d;
pub mod linear;
pub mod pool;
pub mod relu;
pub mod soft;
pub mod winograd;

use crate::model::{Layer, Params, Shape};

/// A layer's weights in f64; `bias` is empty for a layer without bias.
#[derive(Clone, Debug, Default)]
pub struct Params64 {
    pub weight: Vec<f64>,
    pub bias: Vec<f64>,
}

impl From<&Params> for Params64 {
    fn from(p: &Params) -> Self {
        Params64 {
            weight: p.weight.iter().map(|&v| v as f64).collect(),
            bias: p.bias.iter().map(|&v| v as f64).collect(),
        }
    }
}

impl Params64 {
    /// The same weights without the bias (the map that carries tangents).
    pub fn without_bias(&self) -> Params64 {
        Params64 {
            weight: self.weight.clone(),
            bias: Vec::new(),
        }
    }

    /// Bias of output `o`, zero for a layer without bias.
    pub fn bias(&self, o: usize) -> f64 {
        self.bias.get(o).copied().unwrap_or(0.0)
    }
}

fn params(p: Option<&Params64>) -> &Params64 {
    p.expect("layer with weights was given none")
}

/// The layer's output for input `x` (one sample).
pub fn forward(
    layer: &Layer,
    input: Shape,
    output: Shape,
    p: Option<&Params64>,
    x: &[f64],
) -> Vec<f64> {
    match layer {
        Layer::Conv2d(c) => conv2d::forward(c, input.chw(), output.chw(), params(p), x),
        Layer::Relu => relu::forward(x),
        Layer::MaxPool2d(pl) => pool::max_forward(pl, input.chw(), output.chw(), x),
        Layer::AvgPool2d(pl) => pool::avg_forward(pl, input.chw(), output.chw(), x),
        Layer::Flatten => x.to_vec(),
        Layer::Linear(l) => linear::forward(l, params(p), x),
    }
}

/// The gradient with respect to the layer's input `x`, given the gradient `gout` of its output.
pub fn backward(
    layer: &Layer,
    input: Shape,
    output: Shape,
    p: Option<&Params64>,
    x: &[f64],
    gout: &[f64],
) -> Vec<f64> {
    match layer {
        Layer::Conv2d(c) => conv2d::backward(c, input.chw(), output.chw(), params(p), gout),
        Layer::Relu => relu::backward(x, gout),
        Layer::MaxPool2d(pl) => pool::max_backward(pl, input.chw(), output.chw(), x, gout),
        Layer::AvgPool2d(pl) => pool::avg_backward(pl, input.chw(), output.chw(), gout),
        Layer::Flatten => gout.to_vec(),
        Layer::Linear(l) => linear::backward(l, params(p), gout),
    }
}

/// Gradients of the layer's weights and bias at input `x` given `gout`, for layers that have weights
/// (an empty bias for a layer without one).
pub fn weight_grad(
    layer: &Layer,
    input: Shape,
    output: Shape,
    x: &[f64],
    gout: &[f64],
) -> Option<Params64> {
    match layer {
        Layer::Conv2d(c) => Some(conv2d::weight_grad(c, input.chw(), output.chw(), x, gout)),
        Layer::Linear(l) => Some(linear::weight_grad(l, x, gout)),
        _ => None,
    }
}
