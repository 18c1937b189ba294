//! Signed diverging heatmaps of attributions, written as PNG: each image's input (grey) beside its
//! attribution map (blue negative, white zero, red positive), one image per row.

use crate::error::Result;
use crate::visualize::{self, GridRow, Panel, Style};
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

/// Writes one row per image: the input (channel mean, grey) beside its attribution map (channel sum),
/// each pixel drawn `scale` x `scale`. [`crate::visualize`] has the other ways of drawing them.
pub fn write(
    path: impl AsRef<Path>,
    inputs: &[f32],
    attributions: &[f32],
    shape: [usize; 3],
    scale: u32,
) -> Result<()> {
    let style = Style {
        scale,
        ..Style::default()
    };
    let len = shape.iter().product::<usize>();
    let rows: Vec<GridRow> = inputs
        .chunks(len)
        .zip(attributions.chunks(len))
        .map(|(input, attribution)| GridRow {
            title: String::new(),
            input: input.to_vec(),
            shape,
            panels: vec![Panel::new("", attribution.to_vec(), &style)],
        })
        .collect();
    visualize::write_png(&visualize::grid(&rows, &style)?, path)
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
