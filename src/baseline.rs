//! Baselines: the reference input b that IG integrates from.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rand::{RngExt, SeedableRng};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub enum Baseline {
    /// All zeros (the default).
    Zero,
    /// Every value the same.
    Constant(f32),
    /// The input blurred with a Gaussian of this standard deviation in pixels (per channel).
    Blur { sigma: f32 },
    /// Uniform noise in [0, 1), reproducible from the seed.
    Noise { seed: u64 },
    /// A .npy file of shape [C, H, W] (used for every image) or [N, C, H, W].
    File(PathBuf),
}

/// Default blur: strong enough to remove the strokes of a 28x28 digit.
pub const DEFAULT_BLUR_SIGMA: f32 = 4.0;

impl Baseline {
    /// `zero`, a number, `blur[:SIGMA]`, `noise[:SEED]` or a path to a .npy file.
    pub fn parse(text: &str) -> Result<Baseline> {
        let (name, arg) = text.split_once(':').unwrap_or((text, ""));
        let bad = || {
            Error::Input(format!(
                "baseline `{text}`: expected zero, VALUE, blur[:SIGMA], noise[:SEED] or FILE.npy"
            ))
        };
        Ok(match name {
            "zero" | "zeros" if arg.is_empty() => Baseline::Zero,
            "blur" => Baseline::Blur {
                sigma: if arg.is_empty() {
                    DEFAULT_BLUR_SIGMA
                } else {
                    arg.parse()
                        .ok()
                        .filter(|s: &f32| *s > 0.0 && s.is_finite())
                        .ok_or_else(bad)?
                },
            },
            "noise" => Baseline::Noise {
                seed: if arg.is_empty() {
                    0
                } else {
                    arg.parse().map_err(|_| bad())?
                },
            },
            _ if text.ends_with(".npy") => Baseline::File(PathBuf::from(text)),
            _ => match text.parse::<f32>() {
                Ok(v) if v.is_finite() => Baseline::Constant(v),
                _ => return Err(bad()),
            },
        })
    }

    /// The baseline of every image of `inputs` (`[N, C, H, W]`).
    pub fn make(&self, inputs: &Tensor) -> Result<Tensor> {
        let [n, c, h, w] = inputs.shape[..] else {
            return Err(Error::Input(format!(
                "inputs of shape {:?}, expected [N, C, H, W]",
                inputs.shape
            )));
        };
        let len = c * h * w;
        let data = match self {
            Baseline::Zero => vec![0.0; n * len],
            Baseline::Constant(v) => vec![*v; n * len],
            Baseline::Blur { sigma } => inputs
                .data
                .chunks(h * w)
                .flat_map(|plane| blur(plane, h, w, *sigma))
                .collect(),
            Baseline::Noise { seed } => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(*seed);
                (0..n * len).map(|_| rng.random::<f32>()).collect()
            }
            Baseline::File(path) => {
                let t = Tensor::read_images(&[path], [c, h, w])?;
                match t.shape[0] {
                    1 => t.data.repeat(n),
                    m if m == n => t.data,
                    m => {
                        return Err(Error::Input(format!(
                            "{}: holds {m} baselines for {n} images; give one or one per image",
                            path.display()
                        )));
                    }
                }
            }
        };
        Tensor::new(inputs.shape.clone(), data)
    }
}

/// Separable Gaussian blur of one `h x w` plane, truncated at 3 sigma, edges clamped.
fn blur(plane: &[f32], h: usize, w: usize, sigma: f32) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let norm: f32 = kernel.iter().sum();
    let pass = |src: &[f32], along_rows: bool| -> Vec<f32> {
        let mut out = vec![0.0; src.len()];
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (k, weight) in kernel.iter().enumerate() {
                    let d = k as isize - radius;
                    let (yy, xx) = if along_rows {
                        (y as isize, (x as isize + d).clamp(0, w as isize - 1))
                    } else {
                        ((y as isize + d).clamp(0, h as isize - 1), x as isize)
                    };
                    acc += weight * src[yy as usize * w + xx as usize];
                }
                out[y * w + x] = acc / norm;
            }
        }
        out
    };
    pass(&pass(plane, true), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(Baseline::parse("zero").unwrap(), Baseline::Zero);
        assert_eq!(Baseline::parse("0.5").unwrap(), Baseline::Constant(0.5));
        assert_eq!(
            Baseline::parse("blur:2").unwrap(),
            Baseline::Blur { sigma: 2.0 }
        );
        assert_eq!(
            Baseline::parse("noise:7").unwrap(),
            Baseline::Noise { seed: 7 }
        );
        assert_eq!(
            Baseline::parse("b.npy").unwrap(),
            Baseline::File("b.npy".into())
        );
        assert!(Baseline::parse("blur:-1").is_err());
        assert!(Baseline::parse("nan").is_err());
        assert!(Baseline::parse("gray").is_err());
    }

    #[test]
    fn blur_keeps_constants_and_mass() {
        let flat = vec![0.25; 5 * 7];
        for v in blur(&flat, 5, 7, 1.5) {
            assert!((v - 0.25).abs() < 1e-6);
        }
        let mut dot = vec![0.0; 21 * 21];
        dot[10 * 21 + 10] = 1.0;
        let b = blur(&dot, 21, 21, 2.0);
        assert!((b.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(b[10 * 21 + 10] < 0.1 && b[10 * 21 + 10] == b.iter().cloned().fold(0.0, f32::max));
    }

    #[test]
    fn noise_is_reproducible() {
        let x = Tensor::new(vec![2, 1, 3, 3], vec![0.0; 18]).unwrap();
        let a = Baseline::Noise { seed: 3 }.make(&x).unwrap();
        assert_eq!(a, Baseline::Noise { seed: 3 }.make(&x).unwrap());
        assert_ne!(a, Baseline::Noise { seed: 4 }.make(&x).unwrap());
        assert!(a.data.iter().all(|v| (0.0..1.0).contains(v)));
    }
}
