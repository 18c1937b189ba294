//! Attribution on the shipped MNIST CNN, on the adapter gig picks (set WGPU_ADAPTER_NAME /
//! WGPU_BACKEND to choose): latency at batch 1 and throughput at batch 64 with 50 Gauss-Legendre
//! steps, and cost against steps at batch 1 and 16, which should grow linearly while the dispatches
//! per attribution stay the same (checked before timing).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gig::{Engine, EngineOptions, Rule, integrated_gradients};

mod common;

fn attribution(c: &mut Criterion) {
    let (model, gpu, images) = common::shipped();
    let mut engine = Engine::new(&gpu, &model, EngineOptions::default()).unwrap();
    let q = Rule::GaussLegendre.nodes(50).unwrap();
    let mut group = c.benchmark_group(format!("ig_gausslegendre50/{}", gpu.describe()));
    group.sample_size(10);
    let batch_of = |batch: usize| common::digits(&model, &images, batch);
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

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = attribution
}
criterion_main!(benches);
