//! The training loop (epochs of shuffled mini-batches with optional shift augmentation, a cosine
//! learning-rate schedule, held-out accuracy after every epoch, a progress bar) and classification scores.

use crate::backend::Backend;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::{Engine, EngineOptions, Gpu, Trainer};
use crate::ig::argmax;
use crate::model::Model;
use crate::optim::{Optimizer, cosine};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub optimizer: Optimizer,
    /// Seeds the shuffling and the augmentation (the weights are seeded by the caller).
    pub seed: u64,
    /// Shift every training image by up to this many pixels in each direction (0: off).
    pub shift: usize,
    /// Decay the learning rate to 0 along a cosine over all steps (else keep it constant).
    pub cosine: bool,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
}

/// What one epoch did.
#[derive(Clone, Debug, Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (each before its update).
    pub loss: f64,
    pub train_accuracy: f64,
    /// Accuracy on the held-out set after the epoch.
    pub test_accuracy: Option<f64>,
    pub images_per_s: f64,
}

/// Copies `image` (`[C, H, W]`) shifted by (dy, dx) pixels, filling with zeros.
pub fn shift_image(image: &[f32], [c, h, w]: [usize; 3], dy: isize, dx: isize) -> Vec<f32> {
    let mut out = vec![0.0; image.len()];
    for ch in 0..c {
        for y in 0..h {
            let sy = y as isize - dy;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            for x in 0..w {
                let sx = x as isize - dx;
                if sx >= 0 && sx < w as isize {
                    out[(ch * h + y) * w + x] = image[(ch * h + sy as usize) * w + sx as usize];
                }
            }
        }
    }
    out
}

/// Trains `model` on `train` on the GPU, calling `on_epoch` after every epoch; returns the trained model
/// and the reports.
pub fn train(
    gpu: &Gpu,
    model: &Model,
    train: &Dataset,
    test: Option<&Dataset>,
    config: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<(Model, Vec<EpochReport>)> {
    if train.is_empty() {
        return Err(Error::Input("the training set is empty".into()));
    }
    if train.shape != model.input_shape() {
        return Err(Error::Input(format!(
            "the data holds images of shape {:?} but the model takes {:?}",
            train.shape,
            model.input_shape()
        )));
    }
    if train.classes > model.classes() {
        return Err(Error::Input(format!(
            "the data has {} classes but the model only {} outputs",
            train.classes,
            model.classes()
        )));
    }
    if config.epochs == 0 || config.batch == 0 || !(config.lr > 0.0 && config.lr.is_finite()) {
        return Err(Error::Input(
            "epochs and batch must be at least 1 and the learning rate positive".into(),
        ));
    }
    let mut trainer = Trainer::new(gpu, model, config.optimizer, config.batch)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    let batches = train.len().div_ceil(config.batch);
    let total = config.epochs * batches;
    let s = config.shift as i32;
    let mut reports = Vec::new();
    for epoch in 1..=config.epochs {
        let bar = if config.progress {
            ProgressBar::new(batches as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{}", config.epochs));
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0, 0);
        for (b, indices) in order.chunks(config.batch).enumerate() {
            let mut images = Vec::with_capacity(indices.len() * model.input_len());
            for &i in indices {
                if s > 0 {
                    let (dy, dx) = (rng.random_range(-s..=s), rng.random_range(-s..=s));
                    images.extend(shift_image(
                        train.image(i),
                        train.shape,
                        dy as isize,
                        dx as isize,
                    ));
                } else {
                    images.extend_from_slice(train.image(i));
                }
            }
            let labels: Vec<u8> = indices.iter().map(|&i| train.labels[i]).collect();
            let t = (epoch - 1) * batches + b;
            let lr = if config.cosine {
                cosine(config.lr, t, total)
            } else {
                config.lr
            };
            let r = trainer.step(&images, &labels, lr)?;
            loss_sum += r.loss * indices.len() as f64;
            correct += r.correct;
            seen += indices.len();
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.4}  {:.0} images/s",
                loss_sum / seen as f64,
                seen as f64 / start.elapsed().as_secs_f64()
            ));
        }
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let test_accuracy = match test {
            Some(t) if !t.is_empty() => {
                let mut engine = Engine::new(gpu, &trainer.model()?, EngineOptions::default())?;
                Some(score(&mut engine, t)?.accuracy)
            }
            _ => None,
        };
        let report = EpochReport {
            epoch,
            loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            test_accuracy,
            images_per_s: seen as f64 / seconds,
        };
        on_epoch(&report);
        reports.push(report);
    }
    Ok((trainer.model()?, reports))
}

/// Classification scores of a model on a labelled set.
#[derive(Clone, Debug, Serialize)]
pub struct Scores {
    pub accuracy: f64,
    pub count: usize,
    /// Accuracy per true class (NaN for a class with no images).
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

/// Predicts every image of `data` with `backend` and scores the predictions.
pub fn score(backend: &mut dyn Backend, data: &Dataset) -> Result<Scores> {
    let classes = backend.model().classes();
    if data.shape != backend.model().input_shape() {
        return Err(Error::Input(format!(
            "the data holds images of shape {:?} but the model takes {:?}",
            data.shape,
            backend.model().input_shape()
        )));
    }
    if data.classes > classes {
        return Err(Error::Input(format!(
            "the data has {} classes but the model only {classes} outputs",
            data.classes
        )));
    }
    let logits = backend.logits(&data.images)?;
    let mut confusion = vec![vec![0; classes]; classes];
    for (l, &label) in logits.iter().zip(&data.labels) {
        confusion[label as usize][argmax(l)] += 1;
    }
    let right: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let per_class = (0..classes)
        .map(|c| confusion[c][c] as f64 / confusion[c].iter().sum::<usize>() as f64)
        .collect();
    Ok(Scores {
        accuracy: right as f64 / data.len().max(1) as f64,
        count: data.len(),
        per_class,
        confusion,
    })
}

#[cfg(test)]
mod tests {
    use super::shift_image;

    #[test]
    fn shifting_moves_and_zero_fills() {
        let img: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        assert_eq!(
            shift_image(&img, [1, 3, 3], 1, 0),
            vec![0., 0., 0., 1., 2., 3., 4., 5., 6.]
        );
        assert_eq!(
            shift_image(&img, [1, 3, 3], 0, -1),
            vec![2., 3., 0., 5., 6., 0., 8., 9., 0.]
        );
        assert_eq!(shift_image(&img, [1, 3, 3], 0, 0), img);
    }
}
