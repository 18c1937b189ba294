//! Helpers shared by the integration tests.
#![allow(dead_code)]

use gig::{Engine, EngineOptions, Gpu, GpuOptions, Model};
use rand::{RngExt, SeedableRng};
use std::sync::OnceLock;

/// One device per test binary (lavapipe in CI).
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        Gpu::new(&GpuOptions::default()).expect("no wgpu adapter; install mesa-vulkan-drivers")
    })
}

pub fn engine(model: &Model) -> Engine {
    Engine::new(gpu(), model, EngineOptions::default()).unwrap()
}

/// |a - b| / |b| in the L2 norm.
pub fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(1e-300)).sqrt()
}

/// `n` random images in [0, 1) with random baselines in [lo, hi), targets cycling through the classes.
pub fn random_batch(model: &Model, n: usize, seed: u64, (lo, hi): (f32, f32)) -> gig::Batch {
    let dim = model.input_len();
    let targets = (0..n).map(|i| i % model.classes()).collect();
    gig::Batch::new(
        model,
        uniform(n * dim, 0.0, 1.0, seed),
        uniform(n * dim, lo, hi, seed + 1),
        targets,
    )
    .unwrap()
}

/// Uniform values in [lo, hi), seeded.
pub fn uniform(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// An engine that runs every layer in kernels of its own (for testing layers alone).
/// An engine that computes |dF/dx| at every point (no folded input gradient).
pub fn with_norms(model: &Model) -> Engine {
    let options = EngineOptions {
        gradient_norms: true,
        ..EngineOptions::default()
    };
    Engine::new(gpu(), model, options).unwrap()
}

pub fn unfused(model: &Model) -> Engine {
    let options = EngineOptions {
        fuse: false,
        ..EngineOptions::default()
    };
    Engine::new(gpu(), model, options).unwrap()
}

/// A round driver that runs the given plans once; every image's accumulators get `weights`.
pub struct OneRound {
    pub plans: Vec<gig::schedule::PathPlan>,
    pub weights: Vec<f64>,
    pub done: bool,
}

impl OneRound {
    /// All into accumulator 0 with weight 1.
    pub fn new(plans: Vec<gig::schedule::PathPlan>) -> OneRound {
        OneRound::weighted(plans, vec![1.0])
    }

    pub fn weighted(plans: Vec<gig::schedule::PathPlan>, weights: Vec<f64>) -> OneRound {
        OneRound {
            plans,
            weights,
            done: false,
        }
    }
}

impl gig::backend::RoundDriver for OneRound {
    fn next(
        &mut self,
        images: std::ops::Range<usize>,
        _last: Option<&gig::Evaluation>,
    ) -> gig::Result<Option<Vec<gig::schedule::PathPlan>>> {
        if self.done {
            self.done = false;
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.plans[images].to_vec()))
    }

    fn weights(&mut self, images: std::ops::Range<usize>) -> Vec<Vec<f64>> {
        vec![self.weights.clone(); images.len()]
    }

    fn max_points(&self) -> usize {
        self.plans
            .iter()
            .map(|p| p.gradient.len() + p.forward.len())
            .max()
            .unwrap_or(1)
    }
}
