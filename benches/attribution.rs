//! Attribution on the shipped MNIST CNN: latency at batch 1 and throughput at batch 64, 50
//! Gauss-Legendre steps, on the adapter gig picks (set WGPU_ADAPTER_NAME / WGPU_BACKEND to choose).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gig::{
    Batch, Engine, EngineOptions, Gpu, GpuOptions, Model, Rule, Tensor, integrated_gradients,
};

fn attribution(c: &mut Criterion) {
    let model = Model::load("assets/mnist_cnn.safetensors").unwrap();
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let mut engine = Engine::new(&gpu, &model, EngineOptions::default()).unwrap();
    let digits: Vec<String> = (0..10).map(|d| format!("assets/digits/{d}.png")).collect();
    let images = Tensor::read_images(&digits, model.input_shape()).unwrap();
    let q = Rule::GaussLegendre.nodes(50).unwrap();
    let dim = model.input_len();
    let mut group = c.benchmark_group(format!("ig_gausslegendre50/{}", gpu.describe()));
    group.sample_size(10);
    for batch in [1usize, 64] {
        let inputs: Vec<f32> = (0..batch)
            .flat_map(|i| images.data[(i % 10) * dim..(i % 10 + 1) * dim].to_vec())
            .collect();
        let targets = (0..batch).map(|i| i % 10).collect();
        let b = Batch::new(&model, inputs, vec![0.0; batch * dim], targets).unwrap();
        group.throughput(Throughput::Elements((batch * q.len()) as u64));
        group.bench_function(format!("batch{batch}"), |bench| {
            bench.iter(|| integrated_gradients(&mut engine, &b, &q).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, attribution);
criterion_main!(benches);
