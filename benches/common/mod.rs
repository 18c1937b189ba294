//! What the benches share: the shipped model, the adapter gig picks, and batches of the shipped digits.

use criterion::Criterion;
use gig::{Batch, Gpu, GpuOptions, Model, Tensor};

/// The shipped MNIST CNN, the adapter gig picks (WGPU_ADAPTER_NAME / WGPU_BACKEND choose) and the ten
/// shipped digits.
pub fn shipped() -> (Model, Gpu, Tensor) {
    let model = Model::load("assets/mnist_cnn.safetensors").unwrap();
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let digits: Vec<String> = (0..10).map(|d| format!("assets/digits/{d}.png")).collect();
    let images = Tensor::read_images(&digits, model.input_shape()).unwrap();
    (model, gpu, images)
}

/// `n` images, the ten digits over and over, each for its own class, against a zero baseline.
pub fn digits(model: &Model, images: &Tensor, n: usize) -> Batch {
    let dim = model.input_len();
    let inputs = (0..n)
        .flat_map(|i| images.data[(i % 10) * dim..(i % 10 + 1) * dim].to_vec())
        .collect();
    let targets = (0..n).map(|i| i % 10).collect();
    Batch::new(model, inputs, vec![0.0; n * dim], targets).unwrap()
}

/// Criterion without plots: plotters needs system fonts that headless machines (CI, lavapipe boxes)
/// lack, and panics without them; the numbers go to the terminal and target/criterion.
pub fn criterion() -> Criterion {
    Criterion::default().without_plots()
}
