//! Attribution on the shipped MNIST CNN, on the adapter gig picks (set WGPU_ADAPTER_NAME /
//! WGPU_BACKEND to choose): latency at batch 1 and throughput at batch 64 with 50 Gauss-Legendre
//! steps, and cost against steps at batch 1 and 16, which should grow linearly while the dispatches
//! per attribution stay the same (checked before timing).

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
    let batch_of = |batch: usize| {
        let inputs: Vec<f32> = (0..batch)
            .flat_map(|i| images.data[(i % 10) * dim..(i % 10 + 1) * dim].to_vec())
            .collect();
        let targets = (0..batch).map(|i| i % 10).collect();
        Batch::new(&model, inputs, vec![0.0; batch * dim], targets).unwrap()
    };
    for batch in [1usize, 64] {
        let b = batch_of(batch);
        group.throughput(Throughput::Elements((batch * q.len()) as u64));
        group.bench_function(format!("batch{batch}"), |bench| {
            bench.iter(|| integrated_gradients(&mut engine, &b, &q).unwrap())
        });
    }
    group.finish();

    // Cost against steps: one chunk, the same dispatches, only the rows grow (up to what one chunk
    // holds on lavapipe).
    for (batch, most) in [(1usize, 256usize), (16, 128)] {
        let b = batch_of(batch);
        let mut group = c.benchmark_group(format!("ig_steps_batch{batch}/{}", gpu.describe()));
        group.sample_size(10);
        let mut dispatches = None;
        for steps in [8usize, 16, 32, 64, 128, 256]
            .into_iter()
            .filter(|&s| s <= most)
        {
            let q = Rule::GaussLegendre.nodes(steps).unwrap();
            let stats = integrated_gradients(&mut engine, &b, &q).unwrap().stats;
            // (More rows than a chunk holds would add chunks, each with the same dispatches.)
            assert_eq!(
                stats.chunks, 1,
                "batch {batch}, {steps} steps: several chunks"
            );
            assert_eq!(
                *dispatches.get_or_insert(stats.dispatches),
                stats.dispatches,
                "batch {batch}: dispatches per attribution changed at {steps} steps"
            );
            group.throughput(Throughput::Elements((batch * steps) as u64));
            group.bench_function(format!("steps{steps}"), |bench| {
                bench.iter(|| integrated_gradients(&mut engine, &b, &q).unwrap())
            });
        }
        group.finish();
    }
}

// No plots: plotters needs system fonts that headless machines (CI, lavapipe boxes) lack, and it
// panics without them; the numbers go to the terminal and target/criterion.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = attribution
}
criterion_main!(benches);
