//! A sequential CNN: its layers, the shape of every activation, and its weights, checked for consistency.

mod arch;
mod file;

pub use arch::{Conv2d, Layer, Linear, Pool2d, Shape, format_arch, parse_arch, parse_input_shape};
pub use file::{ARCH_KEY, INPUT_SHAPE_KEY};

use crate::error::{Error, Result};
use rand::{RngExt, SeedableRng};

/// Weights of a Conv2d or Linear layer in PyTorch's layout; `bias` is empty for a layer without bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A validated sequential model: every layer fits its input, every weight is present, shaped and finite.
#[derive(Clone, Debug)]
pub struct Model {
    layers: Vec<Layer>,
    /// `shapes[0]` is the input, `shapes[i + 1]` the output of layer i.
    shapes: Vec<Shape>,
    params: Vec<Option<Params>>,
}

/// "layer 3 (conv(16,32,3,p1))": how errors name a layer.
pub(crate) fn layer_name(index: usize, layer: &Layer) -> String {
    format!("layer {index} ({layer})")
}

impl Model {
    /// Checks the layer list against the input shape and the weights against the layers.
    pub fn new(
        layers: Vec<Layer>,
        input: [usize; 3],
        params: Vec<Option<Params>>,
    ) -> Result<Model> {
        let shapes = infer_shapes(&layers, input)?;
        if params.len() != layers.len() {
            return Err(Error::Model(format!(
                "{} parameter entries for {} layers",
                params.len(),
                layers.len()
            )));
        }
        for (i, (layer, p)) in layers.iter().zip(&params).enumerate() {
            let name = layer_name(i, layer);
            match (layer.param_shapes(), p) {
                (None, None) => {}
                (None, Some(_)) => {
                    return Err(Error::Model(format!(
                        "{name} has no weights but was given some"
                    )));
                }
                (Some(_), None) => {
                    return Err(Error::Model(format!("{name} is missing its weights")));
                }
                (Some((w, b)), Some(p)) => {
                    let want_b = b.map_or(0, |b| b.iter().product());
                    for (what, have, want) in [
                        ("weight", p.weight.len(), w.iter().product::<usize>()),
                        ("bias", p.bias.len(), want_b),
                    ] {
                        if have != want {
                            return Err(Error::Model(format!(
                                "{name}: {what} has {have} values but the layer needs {want}"
                            )));
                        }
                    }
                    for (what, values) in [("weight", &p.weight), ("bias", &p.bias)] {
                        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
                            return Err(Error::Model(format!(
                                "{name}: {what} value {k} is {} (weights must be finite)",
                                values[k]
                            )));
                        }
                    }
                }
            }
        }
        Ok(Model {
            layers,
            shapes,
            params,
        })
    }

    /// A model with PyTorch's default initialisation (uniform in +-1/sqrt(fan_in)), seeded.
    pub fn random(layers: Vec<Layer>, input: [usize; 3], seed: u64) -> Result<Model> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let params = layers
            .iter()
            .map(|l| {
                l.param_shapes().map(|(w, b)| {
                    let fan_in: usize = w[1..].iter().product();
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    let mut draw = |n: usize| -> Vec<f32> {
                        (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                    };
                    let weight = draw(w.iter().product());
                    let bias = draw(b.map_or(0, |b| b[0]));
                    Params { weight, bias }
                })
            })
            .collect();
        Model::new(layers, input, params)
    }

    /// Parses an architecture string and initialises it randomly (see [`Model::random`]).
    pub fn random_from_arch(arch: &str, input: [usize; 3], seed: u64) -> Result<Model> {
        Model::random(parse_arch(arch).map_err(Error::Model)?, input, seed)
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// `shapes()[0]` is the input shape, `shapes()[i + 1]` the output of layer i.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// The input shape `[C, H, W]`.
    pub fn input_shape(&self) -> [usize; 3] {
        self.shapes[0].chw()
    }

    /// Values per input image (C * H * W).
    pub fn input_len(&self) -> usize {
        self.shapes[0].len()
    }

    /// Number of output logits.
    pub fn classes(&self) -> usize {
        self.shapes[self.layers.len()].len()
    }

    pub fn params(&self, layer: usize) -> Option<&Params> {
        self.params[layer].as_ref()
    }

    /// The architecture in the grammar of [`parse_arch`].
    pub fn arch(&self) -> String {
        format_arch(&self.layers)
    }
}

fn infer_shapes(layers: &[Layer], input: [usize; 3]) -> Result<Vec<Shape>> {
    if input.contains(&0) {
        return Err(Error::Model(format!(
            "input shape {input:?} has a zero dimension"
        )));
    }
    let mut shapes = vec![Shape::Chw(input)];
    for (i, layer) in layers.iter().enumerate() {
        let s = layer
            .output_shape(shapes[i])
            .map_err(|e| Error::Model(format!("{}: {e}", layer_name(i, layer))))?;
        shapes.push(s);
    }
    match shapes.last() {
        Some(Shape::Flat(_)) => Ok(shapes),
        Some(s) => Err(Error::Model(format!(
            "the model's output must be a vector of logits but is {s}; end with flatten or linear"
        ))),
        None => Err(Error::Model("the model has no layers".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_weights() {
        let layers = parse_arch("flatten linear(4,2)").unwrap();
        let good = Params {
            weight: vec![0.5; 8],
            bias: vec![0.0; 2],
        };
        assert!(Model::new(layers.clone(), [1, 2, 2], vec![None, Some(good.clone())]).is_ok());
        let mut bad = good.clone();
        bad.weight[3] = f32::NAN;
        let e = Model::new(layers.clone(), [1, 2, 2], vec![None, Some(bad)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("layer 1 (linear(4,2)): weight value 3 is NaN"),
            "{e}"
        );
        let short = Params {
            weight: vec![0.5; 7],
            bias: vec![0.0; 2],
        };
        let e = Model::new(layers.clone(), [1, 2, 2], vec![None, Some(short)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("weight has 7 values but the layer needs 8"),
            "{e}"
        );
        let e = Model::new(layers, [1, 3, 2], vec![None, Some(good)]).unwrap_err();
        assert!(e.to_string().contains("expects 4 input features"), "{e}");
    }

    #[test]
    fn output_must_be_flat() {
        let e = Model::random_from_arch("conv(1,2,3)", [1, 5, 5], 0).unwrap_err();
        assert!(e.to_string().contains("vector of logits"), "{e}");
    }
}
