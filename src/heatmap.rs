//! Signed diverging heatmaps of attributions, written as PNG: each image's input (grey) beside its
//! attribution map (blue negative, white zero, red positive), one image per row.

use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Fraction of the largest |attribution| values clipped, so one outlier does not wash out the map.
pub const OUTLIER_FRACTION: f64 = 0.02;

/// Blue (-1) through white (0) to red (+1); `v` is clamped to [-1, 1].
pub fn diverging(v: f32) -> [u8; 3] {
    let v = v.clamp(-1.0, 1.0);
    let fade = |t: f32| (255.0 * (1.0 - t.abs())).round() as u8;
    if v >= 0.0 {
        [255, fade(v), fade(v)]
    } else {
        [fade(v), fade(v), 255]
    }
}

/// The |value| below which all but `OUTLIER_FRACTION` of the values lie (at least the smallest nonzero).
pub fn clip_scale(values: &[f32]) -> f32 {
    let mut mags: Vec<f32> = values
        .iter()
        .map(|v| v.abs())
        .filter(|v| *v > 0.0)
        .collect();
    if mags.is_empty() {
        return 1.0;
    }
    mags.sort_by(f32::total_cmp);
    let k = ((mags.len() as f64 * (1.0 - OUTLIER_FRACTION)).ceil() as usize).clamp(1, mags.len());
    mags[k - 1]
}

/// Writes one row per image: the input (channel mean, grey) and its attribution map (channel sum),
/// each pixel drawn `scale` x `scale`.
pub fn write(
    path: impl AsRef<Path>,
    inputs: &[f32],
    attributions: &[f32],
    shape: [usize; 3],
    scale: u32,
) -> Result<()> {
    let path = path.as_ref();
    let [c, h, w] = shape;
    let len = c * h * w;
    let n = attributions.len() / len;
    let s = scale as usize;
    let mut img = RgbImage::from_pixel(
        (2 * w * s + s) as u32,
        (n * h * s + (n - 1) * s) as u32,
        Rgb([255, 255, 255]),
    );
    for i in 0..n {
        let plane = |data: &[f32], f: &dyn Fn(&[f32]) -> f32| -> Vec<f32> {
            (0..h * w)
                .map(|p| {
                    f(&(0..c)
                        .map(|ch| data[i * len + ch * h * w + p])
                        .collect::<Vec<_>>())
                })
                .collect()
        };
        let grey = plane(inputs, &|v| v.iter().sum::<f32>() / c as f32);
        let attr = plane(attributions, &|v| v.iter().sum());
        let k = clip_scale(&attr);
        for p in 0..h * w {
            let g = (grey[p].clamp(0.0, 1.0) * 255.0).round() as u8;
            let (y, x) = (p / w, p % w);
            let top = i * (h * s + s) + y * s;
            for dy in 0..s {
                for dx in 0..s {
                    img.put_pixel((x * s + dx) as u32, (top + dy) as u32, Rgb([g, g, g]));
                    img.put_pixel(
                        (w * s + s + x * s + dx) as u32,
                        (top + dy) as u32,
                        Rgb(diverging(attr[p] / k)),
                    );
                }
            }
        }
    }
    img.save(path).map_err(|e| {
        Error::Input(format!(
            "{}: cannot write the heatmap ({e})",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormap_ends_and_middle() {
        assert_eq!(diverging(0.0), [255, 255, 255]);
        assert_eq!(diverging(1.0), [255, 0, 0]);
        assert_eq!(diverging(-1.0), [0, 0, 255]);
        assert_eq!(diverging(-7.0), [0, 0, 255]);
        assert_eq!(diverging(0.5), [255, 128, 128]);
    }

    #[test]
    fn clipping_ignores_outliers() {
        let mut v: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        v[99] = 1e6;
        assert_eq!(clip_scale(&v), 98.0);
        assert_eq!(clip_scale(&[0.0, 0.0]), 1.0);
    }
}
