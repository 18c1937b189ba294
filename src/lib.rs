//! gig: Integrated Gradients for small image CNNs on any wgpu adapter.
//!
//! ```no_run
//! use gig::{Backend, Batch, Engine, EngineOptions, Gpu, GpuOptions, Model, Rule, integrated_gradients};
//! let model = Model::load("assets/mnist_cnn.safetensors")?;
//! let gpu = Gpu::new(&GpuOptions::default())?;
//! let mut engine = Engine::new(&gpu, &model, EngineOptions::default())?;
//! let x = vec![0.5f32; model.input_len()];
//! let batch = Batch::new(&model, x, vec![0.0; model.input_len()], vec![3])?;
//! let ig = integrated_gradients(&mut engine, &batch, &Rule::GaussLegendre.nodes(50)?)?;
//! println!("delta {}", ig.images[0].delta);
//! # Ok::<(), gig::Error>(())
//! ```

pub mod adaptive;
pub mod backend;
pub mod baseline;
pub mod cpu;
pub mod data;
pub mod error;
pub mod gpu;
pub mod heatmap;
pub mod ig;
pub mod method;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod optim;
pub mod plot;
pub mod quadrature;
pub mod schedule;
pub mod study;
pub mod tensor;
pub mod train;
pub mod visualize;

pub use backend::{Backend, Batch, Evaluation, RunStats};
pub use baseline::Baseline;
pub use cpu::CpuBackend;
pub use error::{Error, Result};
pub use gpu::{Engine, EngineOptions, Gpu, GpuOptions};
pub use ig::{Attribution, Target, integrated_gradients};
pub use model::Model;
pub use quadrature::{Quadrature, Rule};
pub use tensor::Tensor;
