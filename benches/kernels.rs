//! Each kernel of the shipped MNIST CNN's attribution programs alone: every dispatch of a chunk, run
//! again by itself over the buffers an attribution left (`Engine::rerun_dispatch`), for point gradients
//! (50 Gauss-Legendre steps at batch 1 and at batch 32, the most that fits one chunk on lavapipe) and
//! for soft cells (48 cells at batch 1). Each sample is one submission and a wait, so at small sizes
//! the adapter's fixed cost per submission is part of it; `gig bench` gives the GPU time per kernel
//! from timestamps where the adapter has them.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gig::schedule::PathPlan;
use gig::{Backend, Engine, EngineOptions, Rule};
use std::time::Duration;

mod common;

fn kernels(c: &mut Criterion) {
    let (model, gpu, digits) = common::shipped();
    let points =
        |steps: usize| PathPlan::new(Rule::GaussLegendre.nodes(steps).unwrap(), vec![0.0, 1.0]);
    let cells = |n: usize| PathPlan::cells(Rule::RiemannMiddle.nodes(n).unwrap(), vec![0.0, 1.0]);
    for (name, images, plan) in [
        ("points50_batch1", 1, points(50)),
        ("points50_batch32", 32, points(50)),
        ("cells48_batch1", 1, cells(48)),
    ] {
        let b = common::digits(&model, &digits, images);
        let mut engine = Engine::new(&gpu, &model, EngineOptions::default()).unwrap();
        let plans = vec![plan.clone(); images];
        let stats = engine.evaluate(&b, &plans).unwrap().stats;
        // The kernels are rerun as the last chunk ran them: the whole attribution in one chunk.
        assert_eq!(stats.chunks, 1, "{name}: expected one chunk");
        let mut group = c.benchmark_group(format!("kernels_{name}/{}", gpu.describe()));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Elements((images * plan.gradient.len()) as u64));
        for (i, label) in engine.dispatch_labels().iter().enumerate() {
            group.bench_function(format!("{i:02} {label}"), |bench| {
                bench.iter(|| engine.rerun_dispatch(i).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = kernels
}
criterion_main!(benches);
