//! Signed diverging heatmaps of attributions, written as PNG: each image's input (grey) beside its
//! attribution map (blue negative, white zero, red positive), one image per row.

use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Percent of the attribution mass clipped as outliers (Captum's `outlier_perc`), so one outlier does not
/// wash out the map.
pub const OUTLIER_PERCENT: f64 = 2.0;

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

/// The scale that maps attributions to [-1, 1], as Captum's `visualize_image_attr` computes it: the
/// smallest |value| at which the sorted magnitudes' running sum reaches `100 - outlier_percent` percent
/// of their total. Values beyond it saturate the colormap. 1 when every value is zero.
pub fn clip_scale(values: &[f32], outlier_percent: f64) -> f32 {
    let mut mags: Vec<f64> = values.iter().map(|v| f64::from(v.abs())).collect();
    mags.sort_by(f64::total_cmp);
    let total: f64 = mags.iter().sum();
    if total <= 0.0 {
        return 1.0;
    }
    let goal = total * (100.0 - outlier_percent) / 100.0;
    let mut running = 0.0;
    for m in &mags {
        running += m;
        if running >= goal {
            return *m as f32;
        }
    }
    *mags.last().unwrap() as f32
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
        let k = clip_scale(&attr, OUTLIER_PERCENT);
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
    fn clipping_follows_captums_cumulative_sum_threshold() {
        // Magnitudes 1..=100 sum to 5050; 98% of that, 4949, is first reached at 99 (sum of 1..=99 is
        // 4950). Signs do not matter.
        let v: Vec<f32> = (1..=100)
            .map(|i| if i % 2 == 0 { i as f32 } else { -(i as f32) })
            .collect();
        assert_eq!(clip_scale(&v, 2.0), 99.0);
        // One huge outlier holds all the mass: it is its own threshold.
        let mut v: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        v[99] = 1e6;
        assert_eq!(clip_scale(&v, 2.0), 1e6);
        assert_eq!(clip_scale(&v, 0.0), 1e6);
        assert_eq!(clip_scale(&[0.0, 0.0], 2.0), 1.0);
    }
}
