//! Pictures of attributions, after Captum's `visualize_image_attr`: one attribution map [C, H, W]
//! (channels summed, as Captum does) drawn as a heat map, a heat map blended over the grey input, the
//! input masked by the attributions, or the input with the attributions as its opacity; and a grid
//! that puts each input beside several titled maps (one per method, target or visual), written as PNG.
//!
//! Each map is normalised as Captum does for its [`Sign`]: keep the values of that sign, divide by
//! the cumulative-sum threshold of [`heatmap::clip_scale`] (the top `outlier_percent` percent of the
//! mass saturates) and clip, to [-1, 1] for [`Sign::All`] and [0, 1] otherwise.
//!
//! Two deliberate differences from Captum: the signed colormap is [`heatmap::diverging`] (blue
//! negative, white zero, red positive) instead of red-white-green, and the sequential maps follow it
//! (see [`Sign::color`]); and the default sign is `all`, since the sign of an IG attribution is half
//! of what it says. Inputs are expected in [0, 1], as gig reads them.

use crate::error::{Error, Result};
use crate::heatmap::{self, clip_scale, diverging};
use image::{Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// How the normalised attributions are drawn (Captum's `method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisualMethod {
    /// The colormap of the normalised attributions.
    HeatMap,
    /// The heat map over the grey input, with opacity [`Style::blend_alpha`].
    BlendedHeatMap,
    /// The input times the normalised attributions (black where they are zero). Not for [`Sign::All`].
    MaskedImage,
    /// The input with the normalised attributions as its opacity, composited over white. Not for
    /// [`Sign::All`].
    AlphaScaling,
}

impl VisualMethod {
    /// Every name `parse` accepts (Captum's).
    pub const NAMES: [&str; 4] = [
        "heat_map",
        "blended_heat_map",
        "masked_image",
        "alpha_scaling",
    ];

    pub fn parse(name: &str) -> Result<VisualMethod> {
        match name {
            "heat_map" => Ok(VisualMethod::HeatMap),
            "blended_heat_map" => Ok(VisualMethod::BlendedHeatMap),
            "masked_image" => Ok(VisualMethod::MaskedImage),
            "alpha_scaling" => Ok(VisualMethod::AlphaScaling),
            _ => Err(Error::Input(format!(
                "unknown visual method `{name}` (use one of {})",
                VisualMethod::NAMES.join(", ")
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            VisualMethod::HeatMap => "heat_map",
            VisualMethod::BlendedHeatMap => "blended_heat_map",
            VisualMethod::MaskedImage => "masked_image",
            VisualMethod::AlphaScaling => "alpha_scaling",
        }
    }

    /// A short name for titles.
    pub fn label(&self) -> &'static str {
        match self {
            VisualMethod::HeatMap => "heat map",
            VisualMethod::BlendedHeatMap => "blended",
            VisualMethod::MaskedImage => "masked",
            VisualMethod::AlphaScaling => "alpha scaled",
        }
    }

    /// The sign to use when none is asked for: `all` where a colormap can show it, `absolute_value`
    /// for the masks, which cannot.
    pub fn default_sign(&self) -> Sign {
        if self.takes_signed() {
            Sign::All
        } else {
            Sign::AbsoluteValue
        }
    }

    /// Whether the method can draw signed values: a mask or an opacity has no negative.
    fn takes_signed(&self) -> bool {
        matches!(self, VisualMethod::HeatMap | VisualMethod::BlendedHeatMap)
    }
}

/// Which attributions are shown (Captum's `sign`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    All,
    Positive,
    Negative,
    AbsoluteValue,
}

/// Where the sequential map of [`Sign::AbsoluteValue`] ends: ColorBrewer's darkest "Purples" but one,
/// a hue neither half of the diverging map uses, so a magnitude map is not read as a signed one.
pub const ABSOLUTE_END: [u8; 3] = [84, 39, 143];

impl Sign {
    /// Every name `parse` accepts (Captum's).
    pub const NAMES: [&str; 4] = ["all", "positive", "negative", "absolute_value"];

    pub fn parse(name: &str) -> Result<Sign> {
        match name {
            "all" => Ok(Sign::All),
            "positive" => Ok(Sign::Positive),
            "negative" => Ok(Sign::Negative),
            "absolute_value" => Ok(Sign::AbsoluteValue),
            _ => Err(Error::Input(format!(
                "unknown sign `{name}` (use one of {})",
                Sign::NAMES.join(", ")
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Sign::All => "all",
            Sign::Positive => "positive",
            Sign::Negative => "negative",
            Sign::AbsoluteValue => "absolute_value",
        }
    }

    /// A short name for titles.
    pub fn label(&self) -> &'static str {
        match self {
            Sign::All => "signed",
            Sign::Positive => "positive",
            Sign::Negative => "negative",
            Sign::AbsoluteValue => "|attr|",
        }
    }

    /// The colour of a normalised value: for `All` the diverging map of `v` in [-1, 1]; for the others
    /// `v` in [0, 1] runs from white to red (`Positive`, the diverging map's positive half), to blue
    /// (`Negative`, its negative half: `v` is the magnitude of a negative value) or to
    /// [`ABSOLUTE_END`] (`AbsoluteValue`). Values outside the range are clamped.
    pub fn color(&self, v: f32) -> [u8; 3] {
        match self {
            Sign::All => diverging(v),
            Sign::Positive => diverging(v.clamp(0.0, 1.0)),
            Sign::Negative => diverging(-v.clamp(0.0, 1.0)),
            Sign::AbsoluteValue => {
                let t = v.clamp(0.0, 1.0);
                ABSOLUTE_END.map(|end| (255.0 + t * (f32::from(end) - 255.0)).round() as u8)
            }
        }
    }

    /// The attribution a normalised value `v` stands for, given the normalising scale.
    fn attribution(&self, v: f32, scale: f32) -> f32 {
        match self {
            Sign::Negative => -v * scale,
            _ => v * scale,
        }
    }

    /// The range of normalised values.
    fn low(&self) -> f32 {
        if *self == Sign::All { -1.0 } else { 0.0 }
    }
}

/// How one map is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Style {
    pub method: VisualMethod,
    pub sign: Sign,
    /// Percent of the attribution mass that saturates the map (Captum's `outlier_perc`), in [0, 100).
    pub outlier_percent: f64,
    /// Opacity of the heat map over the grey input for [`VisualMethod::BlendedHeatMap`], in [0, 1].
    pub blend_alpha: f32,
    /// Draw a colour bar under the map, labelled in attribution units.
    pub colorbar: bool,
    /// Pixels per input pixel (each side).
    pub scale: u32,
}

impl Default for Style {
    fn default() -> Style {
        Style {
            method: VisualMethod::HeatMap,
            sign: Sign::All,
            outlier_percent: heatmap::OUTLIER_PERCENT,
            blend_alpha: 0.5,
            colorbar: false,
            scale: 8,
        }
    }
}

impl Style {
    /// Fails, naming the setting, unless the style can be drawn.
    pub fn check(&self) -> Result<()> {
        if !self.method.takes_signed() && self.sign == Sign::All {
            return Err(Error::Input(format!(
                "{} cannot show sign `all` (a mask has no negative); use positive, negative or absolute_value",
                self.method.name()
            )));
        }
        // At 100 the threshold would be the smallest value, possibly zero.
        if !(0.0..100.0).contains(&self.outlier_percent) {
            return Err(Error::Input(format!(
                "outlier percent {} must lie in [0, 100)",
                self.outlier_percent
            )));
        }
        if !(0.0..=1.0).contains(&self.blend_alpha) {
            return Err(Error::Input(format!(
                "blend alpha {} must lie in [0, 1]",
                self.blend_alpha
            )));
        }
        if self.scale == 0 {
            return Err(Error::Input("the scale must be at least 1".into()));
        }
        Ok(())
    }
}

/// The attributions of one sign, normalised as Captum does, and the attribution at which they
/// saturate.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// One value per pixel: in [-1, 1] for [`Sign::All`], in [0, 1] otherwise (for `Negative` the
    /// magnitude of the negative values).
    pub values: Vec<f32>,
    /// The magnitude that maps to 1.
    pub scale: f32,
}

/// Normalises per-pixel attributions for `sign`: the other sign's values become zero, the rest are
/// divided by the cumulative-sum threshold of what is kept and clipped.
pub fn normalize(attribution: &[f32], sign: Sign, outlier_percent: f64) -> Normalized {
    let kept: Vec<f32> = attribution
        .iter()
        .map(|&v| match sign {
            Sign::All => v,
            Sign::Positive => v.max(0.0),
            Sign::Negative => (-v).max(0.0),
            Sign::AbsoluteValue => v.abs(),
        })
        .collect();
    let scale = clip_scale(&kept, outlier_percent);
    let values = kept
        .iter()
        .map(|v| (v / scale).clamp(sign.low(), 1.0))
        .collect();
    Normalized { values, scale }
}

/// Sums the channels of a [C, H, W] map into H * W values.
pub fn channel_sum(values: &[f32], shape: [usize; 3]) -> Vec<f32> {
    let [c, h, w] = shape;
    (0..h * w)
        .map(|p| (0..c).map(|ch| values[ch * h * w + p]).sum())
        .collect()
}

/// The input's colour at pixel `p`, in [0, 1]: RGB for three channels, else the channel mean as grey.
fn input_rgb(input: &[f32], shape: [usize; 3], p: usize) -> [f32; 3] {
    let [c, h, w] = shape;
    let at = |ch: usize| input[ch * h * w + p].clamp(0.0, 1.0);
    if c == 3 {
        [at(0), at(1), at(2)]
    } else {
        let grey = (0..c).map(at).sum::<f32>() / c as f32;
        [grey; 3]
    }
}

fn to_u8(v: f32) -> u8 {
    v.clamp(0.0, 255.0).round() as u8
}

fn check_len(what: &str, len: usize, shape: [usize; 3]) -> Result<()> {
    let want = shape.iter().product::<usize>();
    if len != want {
        return Err(Error::Input(format!(
            "{what} has {len} values, the shape {shape:?} needs {want}"
        )));
    }
    Ok(())
}

/// The input as an image, each pixel `scale` x `scale`.
pub fn input_image(input: &[f32], shape: [usize; 3], scale: u32) -> Result<RgbImage> {
    check_len("the input", input.len(), shape)?;
    let [_, h, w] = shape;
    let pixels = (0..h * w)
        .map(|p| input_rgb(input, shape, p).map(|v| to_u8(255.0 * v)))
        .collect::<Vec<_>>();
    Ok(upscale(&pixels, w, h, scale.max(1)))
}

fn upscale(pixels: &[[u8; 3]], w: usize, h: usize, scale: u32) -> RgbImage {
    RgbImage::from_fn(w as u32 * scale, h as u32 * scale, |x, y| {
        Rgb(pixels[(y / scale) as usize * w + (x / scale) as usize])
    })
}

/// One attribution map [C, H, W] of one input [C, H, W], drawn in `style`: W * scale wide, H * scale
/// high, plus [`COLORBAR_HEIGHT`] for the colour bar.
pub fn render(
    input: &[f32],
    attribution: &[f32],
    shape: [usize; 3],
    style: &Style,
) -> Result<RgbImage> {
    style.check()?;
    check_len("the input", input.len(), shape)?;
    check_len("the attribution", attribution.len(), shape)?;
    let [_, h, w] = shape;
    let norm = normalize(
        &channel_sum(attribution, shape),
        style.sign,
        style.outlier_percent,
    );
    let pixels: Vec<[u8; 3]> = norm
        .values
        .iter()
        .enumerate()
        .map(|(p, &v)| {
            let rgb = input_rgb(input, shape, p);
            match style.method {
                VisualMethod::HeatMap => style.sign.color(v),
                VisualMethod::BlendedHeatMap => {
                    let grey = 255.0 * rgb.iter().sum::<f32>() / 3.0;
                    let a = style.blend_alpha;
                    style
                        .sign
                        .color(v)
                        .map(|c| to_u8(a * f32::from(c) + (1.0 - a) * grey))
                }
                VisualMethod::MaskedImage => rgb.map(|c| to_u8(255.0 * c * v)),
                VisualMethod::AlphaScaling => rgb.map(|c| to_u8(255.0 * (v * c + 1.0 - v))),
            }
        })
        .collect();
    let map = upscale(&pixels, w, h, style.scale);
    if !style.colorbar {
        return Ok(map);
    }
    let mut out = RgbImage::from_pixel(
        map.width(),
        map.height() + COLORBAR_HEIGHT,
        Rgb([255, 255, 255]),
    );
    image::imageops::replace(&mut out, &map, 0, 0);
    draw_colorbar(&mut out, map.height(), style, norm.scale)?;
    Ok(out)
}

/// Height of the colour bar band under a map.
pub const COLORBAR_HEIGHT: u32 = 40;
const BAR_TOP: u32 = 6;
const BAR_HEIGHT: u32 = 10;
const TICK_FONT: f64 = 12.0;

/// The colour bar: the colour of each normalised value (for the masks, what an input pixel becomes),
/// with the attributions at its ends and middle.
fn draw_colorbar(img: &mut RgbImage, top: u32, style: &Style, scale: f32) -> Result<()> {
    let width = img.width();
    // Room for the end labels, which are centred on the bar's ends.
    let pad = (width / 8).clamp(1, 24).min(width / 2);
    let (x0, x1) = (pad, width - pad);
    // The bar's last pixel is x0 + span.
    let span = (x1 - x0).saturating_sub(1);
    let low = style.sign.low();
    let at = |t: f32| low + t * (1.0 - low);
    for x in x0..x1 {
        let v = at((x - x0) as f32 / span.max(1) as f32);
        let color = match style.method {
            VisualMethod::HeatMap | VisualMethod::BlendedHeatMap => style.sign.color(v),
            VisualMethod::MaskedImage => [to_u8(255.0 * v); 3],
            // A white pixel stays white whatever its opacity: show what a black one becomes.
            VisualMethod::AlphaScaling => [to_u8(255.0 * (1.0 - v)); 3],
        };
        for y in top + BAR_TOP..top + BAR_TOP + BAR_HEIGHT {
            img.put_pixel(x, y, Rgb(color));
        }
    }
    let tick_y = top + BAR_TOP + BAR_HEIGHT;
    let mut labels = Vec::new();
    for t in [0.0f32, 0.5, 1.0] {
        let x = x0 + (t * span as f32).round() as u32;
        for y in tick_y..tick_y + 3 {
            img.put_pixel(x, y, Rgb([0, 0, 0]));
        }
        labels.push((x, tick_label(style.sign.attribution(at(t), scale))));
    }
    for (x, label) in labels {
        draw_text(
            img,
            &label,
            (x as i32, (tick_y + 5) as i32),
            TICK_FONT,
            HPos::Center,
        )?;
    }
    Ok(())
}

/// Three significant digits, in plain notation where that stays short.
fn tick_label(v: f32) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if (0.01..1000.0).contains(&a) {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.2e}")
    }
}

/// Registers the shipped font as "sans-serif" for plotters, once: no system font is needed.
pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let registered = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/fonts/DejaVuSans.ttf"),
        );
        assert!(
            registered.is_ok(),
            "the shipped font is a valid TrueType file"
        );
    });
}

fn font(size: f64) -> FontDesc<'static> {
    register_font();
    ("sans-serif", size).into_font()
}

/// The width in pixels of `text` in the shipped font.
fn text_width(text: &str, size: f64) -> Result<u32> {
    font(size)
        .box_size(text)
        .map(|(w, _)| w)
        .map_err(|e| Error::Input(format!("cannot lay out `{text}` ({e})")))
}

/// Draws black `text` into `img` with its top at `y`, anchored at `x` by `anchor`.
fn draw_text(
    img: &mut RgbImage,
    text: &str,
    (x, y): (i32, i32),
    size: f64,
    anchor: HPos,
) -> Result<()> {
    let (w, h) = img.dimensions();
    let fail = |e: &dyn std::fmt::Display| Error::Input(format!("cannot draw `{text}` ({e})"));
    let style = font(size).color(&BLACK).pos(Pos::new(anchor, VPos::Top));
    let area = BitMapBackend::with_buffer(img, (w, h)).into_drawing_area();
    area.draw_text(text, &style, (x, y)).map_err(|e| fail(&e))?;
    area.present().map_err(|e| fail(&e))
}

/// One titled map in a grid row.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Drawn above the map; `\n` separates lines.
    pub title: String,
    /// [C, H, W] in the row's shape.
    pub attribution: Vec<f32>,
    pub method: VisualMethod,
    pub sign: Sign,
}

impl Panel {
    /// A panel drawn with `style`'s method and sign.
    pub fn new(title: impl Into<String>, attribution: Vec<f32>, style: &Style) -> Panel {
        Panel {
            title: title.into(),
            attribution,
            method: style.method,
            sign: style.sign,
        }
    }
}

/// One row of a grid: an input, titled, and its maps.
#[derive(Clone, Debug)]
pub struct GridRow {
    /// Drawn above the input; `\n` separates lines.
    pub title: String,
    /// [C, H, W].
    pub input: Vec<f32>,
    pub shape: [usize; 3],
    pub panels: Vec<Panel>,
}

/// Font size of titles, and the height of one title line.
pub const TITLE_FONT: f64 = 14.0;
pub const TITLE_LINE: u32 = 17;
/// Space around and between the cells of a grid.
pub const GRID_GAP: u32 = 8;

/// One row per input: the input, then its panels, each under its title and centred in a column as
/// wide as its widest image or title line. `style` gives the scale, outlier percent, blend alpha and
/// colour bar; each panel its own method and sign. Rows may have different numbers of panels.
pub fn grid(rows: &[GridRow], style: &Style) -> Result<RgbImage> {
    if rows.is_empty() {
        return Err(Error::Input("a grid needs at least one row".into()));
    }
    // Every cell of the grid, row by row: (title, image); the input first.
    let mut cells: Vec<Vec<(&str, RgbImage)>> = Vec::with_capacity(rows.len());
    for row in rows {
        let mut line = vec![(
            row.title.as_str(),
            input_image(&row.input, row.shape, style.scale)?,
        )];
        for panel in &row.panels {
            let panel_style = Style {
                method: panel.method,
                sign: panel.sign,
                ..*style
            };
            let image = render(&row.input, &panel.attribution, row.shape, &panel_style)
                .map_err(|e| Error::Input(format!("panel `{}`: {e}", panel.title)))?;
            line.push((panel.title.as_str(), image));
        }
        cells.push(line);
    }
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0u32; columns];
    for line in &cells {
        for (j, (title, image)) in line.iter().enumerate() {
            let mut w = image.width();
            for text in title.lines() {
                w = w.max(text_width(text, TITLE_FONT)? + 4);
            }
            widths[j] = widths[j].max(w);
        }
    }
    let title_lines = |line: &[(&str, RgbImage)]| {
        line.iter()
            .map(|(t, _)| t.lines().count() as u32)
            .max()
            .unwrap_or(0)
    };
    let heights: Vec<(u32, u32)> = cells
        .iter()
        .map(|line| {
            let band = title_lines(line) * TITLE_LINE;
            let body = line.iter().map(|(_, i)| i.height()).max().unwrap_or(0);
            (band, body)
        })
        .collect();
    let total_w = GRID_GAP + widths.iter().map(|w| w + GRID_GAP).sum::<u32>();
    let total_h = GRID_GAP + heights.iter().map(|(b, i)| b + i + GRID_GAP).sum::<u32>();
    let mut img = RgbImage::from_pixel(total_w, total_h, Rgb([255, 255, 255]));
    let mut y = GRID_GAP;
    for (line, (band, body)) in cells.iter().zip(&heights) {
        let mut x = GRID_GAP;
        for ((title, image), width) in line.iter().zip(&widths) {
            let centre = x + width / 2;
            for (k, text) in title.lines().enumerate() {
                let top = y + k as u32 * TITLE_LINE;
                draw_text(
                    &mut img,
                    text,
                    (centre as i32, top as i32),
                    TITLE_FONT,
                    HPos::Center,
                )?;
            }
            let left = centre - image.width() / 2;
            image::imageops::replace(&mut img, image, i64::from(left), i64::from(y + band));
            x += width + GRID_GAP;
        }
        y += band + body + GRID_GAP;
    }
    Ok(img)
}

/// Writes an image as PNG, compressed hard: these are pictures for documents, not frames.
pub fn write_png(img: &RgbImage, path: impl AsRef<Path>) -> Result<()> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let path = path.as_ref();
    let fail = |e: &dyn std::fmt::Display| {
        Error::Input(format!("{}: cannot write the image ({e})", path.display()))
    };
    let file = std::fs::File::create(path).map_err(|e| fail(&e))?;
    let encoder = PngEncoder::new_with_quality(
        std::io::BufWriter::new(file),
        CompressionType::Best,
        FilterType::Adaptive,
    );
    img.write_with_encoder(encoder).map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_keep_three_significant_digits() {
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(0.0123), "0.0123");
        assert_eq!(tick_label(-12.34), "-12.3");
        assert_eq!(tick_label(123.4), "123");
        assert_eq!(tick_label(0.001234), "1.23e-3");
    }

    #[test]
    fn text_lands_where_asked() {
        let mut img = RgbImage::from_pixel(60, 20, Rgb([255, 255, 255]));
        draw_text(&mut img, "cut", (30, 2), 14.0, HPos::Center).unwrap();
        let dark: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] < 128)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(!dark.is_empty());
        let (min_x, max_x) = (
            dark.iter().map(|d| d.0).min().unwrap(),
            dark.iter().map(|d| d.0).max().unwrap(),
        );
        // Centred on x = 30, a few pixels wide.
        assert!(min_x > 15 && max_x < 45 && min_x < 30 && max_x > 30);
        assert!(text_width("cut", 14.0).unwrap() > 10);
    }
}
