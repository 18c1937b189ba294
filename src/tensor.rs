//! A plain f32 array with a shape, read from and written to .npy files and PNG images.

use crate::error::{Error, Result};
use npyz::{AutoSerialize, WriterBuilder};
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
        let want: usize = shape.iter().product();
        if want != data.len() {
            return Err(Error::Input(format!(
                "shape {shape:?} needs {want} values, got {}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// Reads a C-ordered float32 or float64 .npy file.
    pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |m: String| Error::Input(format!("{}: {m}", path.display()));
        let npy = npyz::NpyFile::new(&bytes[..])
            .map_err(|e| bad(format!("not a valid .npy file ({e})")))?;
        if npy.order() == npyz::Order::Fortran {
            return Err(bad(
                "Fortran-ordered arrays are not supported; save np.ascontiguousarray(a)".into(),
            ));
        }
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let dtype = npy.dtype();
        let data: Vec<f32> = if dtype == f32::default_dtype() {
            npy.into_vec::<f32>()
        } else if dtype == f64::default_dtype() {
            npy.into_vec::<f64>()
                .map(|v| v.into_iter().map(|x| x as f32).collect())
        } else {
            return Err(bad(format!(
                "dtype {} is not supported; use float32 or float64",
                dtype.descr()
            )));
        }
        .map_err(|e| bad(format!("cannot read the array ({e})")))?;
        Tensor::new(shape, data).map_err(|e| bad(e.to_string()))
    }

    /// Writes a float32 .npy file.
    pub fn write_npy(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let shape: Vec<u64> = self.shape.iter().map(|&d| d as u64).collect();
        let mut bytes = Vec::new();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut bytes)
            .begin_nd()
            .map_err(|e| Error::io(path, e))?;
        w.extend(self.data.iter().copied())
            .map_err(|e| Error::io(path, e))?;
        w.finish().map_err(|e| Error::io(path, e))?;
        std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
    }

    /// Reads a PNG as `[channels, H, W]` in [0, 1]: grey for 1 channel, RGB for 3 (alpha is dropped;
    /// a colour image is converted to grey for a 1-channel model and a grey one replicated for 3).
    pub fn read_png(path: impl AsRef<Path>, channels: usize) -> Result<Tensor> {
        let path = path.as_ref();
        let img = image::open(path).map_err(|e| {
            Error::Input(format!("{}: cannot read the image ({e})", path.display()))
        })?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let data: Vec<f32> = match channels {
            1 => img.to_luma32f().into_raw(),
            3 => {
                let rgb = img.to_rgb32f().into_raw();
                (0..3)
                    .flat_map(|c| rgb.iter().skip(c).step_by(3).copied().collect::<Vec<_>>())
                    .collect()
            }
            c => {
                return Err(Error::Input(format!(
                    "{}: PNG input needs a model with 1 or 3 input channels, this one has {c}; use .npy",
                    path.display()
                )));
            }
        };
        Tensor::new(vec![channels, h, w], data)
    }

    /// Loads model inputs from PNG files or one .npy file as `[N, C, H, W]`, checked against the model's
    /// input shape `[C, H, W]`.
    pub fn read_images(paths: &[impl AsRef<Path>], shape: [usize; 3]) -> Result<Tensor> {
        let [c, h, w] = shape;
        let mut data = Vec::new();
        let mut n = 0;
        for path in paths {
            let path = path.as_ref();
            let is_npy = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
            let t = if is_npy {
                Tensor::read_npy(path)?
            } else {
                Tensor::read_png(path, c)?
            };
            let (count, item) = match t.shape[..] {
                [count, ref rest @ ..] if rest.len() == 3 => (count, rest.to_vec()),
                _ if t.shape.len() == 3 => (1, t.shape.clone()),
                _ => {
                    return Err(Error::Input(format!(
                        "{}: array of shape {:?}; expected [N, C, H, W] or [C, H, W]",
                        path.display(),
                        t.shape
                    )));
                }
            };
            if item != shape {
                let what = if is_npy {
                    format!("holds images of shape {item:?}")
                } else {
                    format!("is {}x{} pixels (width x height)", item[2], item[1])
                };
                return Err(Error::Input(format!(
                    "{}: {what} but the model takes [C, H, W] = {shape:?} ({w}x{h} pixels, {c} channel(s))",
                    path.display()
                )));
            }
            crate::backend::check_finite(&path.display().to_string(), &t.data, c * h * w)?;
            n += count;
            data.extend(t.data);
        }
        if n == 0 {
            return Err(Error::Input("no input images".into()));
        }
        Tensor::new(vec![n, c, h, w], data)
    }
}
