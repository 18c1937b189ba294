//! Training on the GPU: one submission per mini-batch runs the training program (forward, softmax
//! cross-entropy, backward to every layer's weights, the optimizer) and reads back the batch's losses.
//! The weights stay on the device between steps.

use super::compiled::{Compiled, KernelTime, Readback};
use super::context::Gpu;
use super::layout::{ChunkUniform, StepUniform};
use super::program::{Limits, Program, Purpose, Sizes, Slot, Tiling};
use crate::error::{Error, Result};
use crate::model::{Model, Params};
use crate::optim::Optimizer;

/// What one training step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepResult {
    /// Mean softmax cross-entropy of the batch (before the update).
    pub loss: f64,
    /// Rows whose top logit was their label.
    pub correct: usize,
}

pub struct Trainer {
    compiled: Compiled,
    model: Model,
    optimizer: Optimizer,
    /// Steps taken.
    steps: usize,
    batch: usize,
    readback: Readback,
}

impl Trainer {
    /// Starts from `model`'s weights; each step takes at most `batch` images.
    pub fn new(gpu: &Gpu, model: &Model, optimizer: Optimizer, batch: usize) -> Result<Trainer> {
        Trainer::with_tiling(gpu, model, optimizer, batch, Tiling::for_adapter(&gpu.info))
    }

    /// As [`Trainer::new`], with the kernels' tiles (and Winograd convs or not) chosen by the caller.
    pub fn with_tiling(
        gpu: &Gpu,
        model: &Model,
        optimizer: Optimizer,
        batch: usize,
        tiling: Tiling,
    ) -> Result<Trainer> {
        if batch == 0 {
            return Err(Error::Input("the batch size must be at least 1".into()));
        }
        let purpose = Purpose::Training {
            adam: matches!(optimizer, Optimizer::Adam { .. }),
        };
        let program = Program::new(model, &tiling, purpose, true, Limits::of(&gpu.limits()));
        let mut compiled = Compiled::new(gpu, model, program)?;
        compiled.ensure(Sizes {
            rows: batch,
            images: 0,
            group_rows: 0,
            slots: 0,
        })?;
        let widest = compiled
            .program
            .params_lens
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(2 * batch);
        Ok(Trainer {
            readback: Readback::new(&gpu.device, 4 * widest as u64),
            compiled,
            model: model.clone(),
            optimizer,
            steps: 0,
            batch,
        })
    }

    /// One optimizer step at learning rate `lr` on `images` (whole images, one label each).
    pub fn step(&mut self, images: &[f32], labels: &[u8], lr: f64) -> Result<StepResult> {
        let rows = labels.len();
        let dim = self.model.input_len();
        if rows == 0 || rows > self.batch || images.len() != rows * dim {
            return Err(Error::Input(format!(
                "a training step takes 1 to {} images of {dim} values with one label each; got {} values and {rows} labels",
                self.batch,
                images.len()
            )));
        }
        let classes = self.model.classes();
        if let Some(l) = labels.iter().find(|&&l| l as usize >= classes) {
            return Err(Error::Input(format!(
                "label {l} is out of range: the model has {classes} outputs"
            )));
        }
        self.steps += 1;
        let t = self.steps;
        let step = match self.optimizer {
            Optimizer::Sgd {
                momentum,
                weight_decay,
            } => StepUniform {
                lr: lr as f32,
                momentum: momentum as f32,
                weight_decay: weight_decay as f32,
                count: t as u32,
                ..Default::default()
            },
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => StepUniform {
                lr: lr as f32,
                weight_decay: weight_decay as f32,
                beta1: beta1 as f32,
                beta2: beta2 as f32,
                eps: eps as f32,
                correction1: (1.0 - beta1.powi(t as i32)) as f32,
                correction2: (1.0 - beta2.powi(t as i32)) as f32,
                count: t as u32,
                ..Default::default()
            },
        };
        let c = &self.compiled;
        let q = &c.gpu.queue;
        let uniform = ChunkUniform {
            grad_rows: rows as u32,
            rows: rows as u32,
            ..Default::default()
        };
        c.write_chunk(&uniform);
        q.write_buffer(c.buffer(Slot::Step), 0, bytemuck::bytes_of(&step));
        q.write_buffer(
            c.buffer(Slot::Activation(0)),
            0,
            bytemuck::cast_slice(images),
        );
        let labels32: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        q.write_buffer(c.buffer(Slot::Labels), 0, bytemuck::cast_slice(&labels32));
        let mut encoder = c.gpu.device.create_command_encoder(&Default::default());
        let used = c.encode(&mut encoder, 0..c.program.dispatches.len(), &uniform);
        let losses = self.readback.read(
            &c.gpu,
            encoder,
            &[(c.buffer(Slot::Losses), 8 * rows as u64)],
        )?;
        self.compiled.collect_profile(&used, &uniform)?;
        let loss = losses.chunks(2).map(|l| f64::from(l[0])).sum::<f64>() / rows as f64;
        if !loss.is_finite() {
            return Err(Error::Gpu(format!(
                "the training loss became {loss} at step {t}; lower the learning rate"
            )));
        }
        Ok(StepResult {
            loss,
            correct: losses.chunks(2).filter(|l| l[1] > 0.5).count(),
        })
    }

    /// Reads one buffer of layer `i`'s weights-then-bias layout back, split into weights and bias.
    fn read_layer(&self, slot: Slot, i: usize) -> Result<Params> {
        let c = &self.compiled;
        let (w, b) = self.model.layers()[i].param_shapes().unwrap();
        let (wn, outputs) = (w.iter().product::<usize>(), w[0]);
        let encoder = c.gpu.device.create_command_encoder(&Default::default());
        let v = self.readback.read(
            &c.gpu,
            encoder,
            &[(c.buffer(slot), 4 * (wn + outputs) as u64)],
        )?;
        Ok(Params {
            weight: v[..wn].to_vec(),
            bias: if b.is_some() {
                v[wn..wn + outputs].to_vec()
            } else {
                Vec::new()
            },
        })
    }

    /// The model with the current weights.
    pub fn model(&self) -> Result<Model> {
        let layers = self.model.layers();
        let params = (0..layers.len())
            .map(|i| match self.model.params(i) {
                Some(_) => self.read_layer(Slot::Params(i), i).map(Some),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Model::new(layers.to_vec(), self.model.input_shape(), params)
    }

    /// The weight gradients of the last step (weights then bias per layer), for testing.
    pub fn last_gradients(&self) -> Result<Vec<Option<Params>>> {
        (0..self.model.layers().len())
            .map(|i| match self.model.params(i) {
                Some(_) => self.read_layer(Slot::Grads(i), i).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// What each dispatch of a step is, in order.
    pub fn dispatch_labels(&self) -> Vec<String> {
        self.compiled
            .program
            .dispatches
            .iter()
            .map(|d| d.label.clone())
            .collect()
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Times every dispatch of the following steps; needs a device with `TIMESTAMP_QUERY`.
    pub fn start_profiling(&mut self) -> Result<()> {
        self.compiled.start_profiling()
    }

    /// GPU time per dispatch since [`Trainer::start_profiling`], which this stops.
    pub fn take_profile(&mut self) -> Option<Vec<KernelTime>> {
        self.compiled.take_profile()
    }
}
