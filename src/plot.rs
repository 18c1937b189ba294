//! Path plots: how the target logit F and the gradient norm change along the straight path from the
//! baseline (alpha 0) to the input (alpha 1), and where the method put its gradient evaluations.
//!
//! One panel per image, stacked in one file, PNG or SVG by the file's extension. Each panel shows F
//! along the path (the forward-only probe's curve when the method ran one, else the line through the
//! gradient points), F at every gradient point, |dF/dx| there on the right-hand axis, a tick on the
//! bottom axis at every gradient alpha, dashed levels at F(b) and F(x), and for Split IG the cut.

use crate::error::{Error, Result};
use crate::method::Report;
use crate::study::Row;
use crate::visualize::{register_font, write_png};
use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Width and height of one image's panel, in pixels.
pub const PANEL_SIZE: (u32, u32) = (760, 380);

const F_COLOR: RGBColor = RGBColor(31, 119, 180);
const NORM_COLOR: RGBColor = RGBColor(255, 127, 14);
const CUT_COLOR: RGBColor = RGBColor(214, 39, 40);
const LEVEL_COLOR: RGBColor = RGBColor(110, 110, 110);

/// Writes the path plot of `reports` (one panel per image) as PNG or SVG, by `path`'s extension.
pub fn path_plot(path: impl AsRef<Path>, reports: &[Report]) -> Result<()> {
    let path = path.as_ref();
    if reports.is_empty() {
        return Err(Error::Input("a path plot needs at least one image".into()));
    }
    let size = (PANEL_SIZE.0, PANEL_SIZE.1 * reports.len() as u32);
    register_font();
    let fail = |e: &dyn std::fmt::Display| {
        Error::Input(format!(
            "{}: cannot write the path plot ({e})",
            path.display()
        ))
    };
    match check_extension(path)? {
        Format::Png => {
            let mut img = RgbImage::new(size.0, size.1);
            draw(
                &BitMapBackend::with_buffer(&mut img, size).into_drawing_area(),
                reports,
            )
            .map_err(|e| fail(&e))?;
            write_png(&img, path)
        }
        Format::Svg => {
            draw(&SVGBackend::new(path, size).into_drawing_area(), reports).map_err(|e| fail(&e))
        }
    }
}

/// The file formats of a path plot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

/// The format `path`'s extension names (case-insensitive), or an error naming the extension.
pub fn check_extension(path: &Path) -> Result<Format> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => Ok(Format::Png),
        "svg" => Ok(Format::Svg),
        _ => Err(Error::Input(format!(
            "{}: unknown plot format `.{ext}` (use .png or .svg)",
            path.display()
        ))),
    }
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, reports: &[Report]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    for (area, report) in root.split_evenly((reports.len(), 1)).iter().zip(reports) {
        panel(area, report)?;
    }
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, r: &Report) -> DrawResult
where
    DB::ErrorType: 'static,
{
    // (alpha, F, |dF/dx|) at the gradient points, in alpha order: uniform rules report them in the
    // rule's order.
    let mut points: Vec<(f64, f64, f64)> = (0..r.path.alphas.len())
        .map(|k| (r.path.alphas[k], r.path.f[k], r.path.grad_norm[k]))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let probe: Vec<(f64, f64)> = r
        .probe
        .iter()
        .flat_map(|p| p.alphas.iter().copied().zip(p.f.iter().copied()))
        .collect();

    let levels = [r.f_baseline, r.f_input]
        .into_iter()
        .chain(r.split.iter().map(|s| s.f_cut));
    let fs: Vec<f64> = points
        .iter()
        .map(|p| p.1)
        .chain(probe.iter().map(|p| p.1))
        .chain(levels)
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = fs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let range = hi - lo;
    // Headroom for the labels at the top and a strip at the bottom for the alpha ticks.
    let (y0, y1) = (lo - 0.14 * range, hi + 0.1 * range);
    let rug = 0.06 * range;
    let norm_max = points
        .iter()
        .map(|p| p.2)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let norm_max = if norm_max > 0.0 { 1.15 * norm_max } else { 1.0 };

    let (chart_area, legend_area) = area.split_vertically(area.dim_in_pixel().1 - LEGEND_HEIGHT);
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(
            format!(
                "image {}: {}, target {}  (F(x) - F(b) = {:.3})",
                r.image,
                r.method,
                r.target,
                r.f_input - r.f_baseline
            ),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0.0..1.0, y0..y1)?
        .set_secondary_coord(0.0..1.0, 0.0..norm_max);
    chart
        .configure_mesh()
        .x_desc("alpha (0 = baseline, 1 = input)")
        .y_desc("F (target logit)")
        .light_line_style(TRANSPARENT)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("|dF/dx|")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14).into_font().color(&NORM_COLOR))
        .draw()?;

    let label = |anchor: HPos, v: VPos| {
        ("sans-serif", 13)
            .into_font()
            .color(&LEVEL_COLOR)
            .pos(Pos::new(anchor, v))
    };
    // Where the curve is usually far from them: F(b) at the right under its line, F(x) at the left
    // over its own.
    for (level, text, x, anchor, side) in [
        (r.f_baseline, "F(b)", 0.99, HPos::Right, VPos::Top),
        (r.f_input, "F(x)", 0.01, HPos::Left, VPos::Bottom),
    ] {
        chart.draw_series(DashedLineSeries::new(
            [(0.0, level), (1.0, level)],
            6,
            4,
            LEVEL_COLOR.stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{text} = {level:.3}"),
            (x, level),
            label(anchor, side),
        )))?;
    }

    if probe.is_empty() {
        chart.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0, p.1)),
            F_COLOR.stroke_width(2),
        ))?;
    } else {
        chart.draw_series(LineSeries::new(
            probe.iter().copied(),
            F_COLOR.mix(0.6).stroke_width(2),
        ))?;
    }
    chart.draw_series(
        points
            .iter()
            .map(|p| Circle::new((p.0, p.1), 3, F_COLOR.filled())),
    )?;
    chart.draw_secondary_series(LineSeries::new(
        points.iter().map(|p| (p.0, p.2)),
        NORM_COLOR.stroke_width(2),
    ))?;
    chart.draw_series(
        points
            .iter()
            .map(|p| PathElement::new([(p.0, y0), (p.0, y0 + rug)], BLACK.stroke_width(1))),
    )?;

    if let Some(s) = &r.split {
        chart.draw_series(LineSeries::new(
            [(s.alpha, y0), (s.alpha, y1)],
            CUT_COLOR.stroke_width(2),
        ))?;
        // Text on the side of the line with more room.
        let (x, anchor) = if s.alpha < 0.6 {
            (s.alpha + 0.01, HPos::Left)
        } else {
            (s.alpha - 0.01, HPos::Right)
        };
        chart.draw_series(std::iter::once(Text::new(
            format!("cut at alpha {:.3}, F = {:.3}", s.alpha, s.f_cut),
            (x, y1),
            ("sans-serif", 13)
                .into_font()
                .color(&CUT_COLOR)
                .pos(Pos::new(anchor, VPos::Top)),
        )))?;
    }

    let mut legend = vec![
        (
            Swatch::Line(F_COLOR),
            if probe.is_empty() {
                "F through the gradient points".to_string()
            } else {
                format!("F, forward-only probe ({} points)", probe.len())
            },
        ),
        (Swatch::Dot(F_COLOR), "F at the gradient points".into()),
        (
            Swatch::Line(NORM_COLOR),
            "|dF/dx| there (right axis)".into(),
        ),
        (Swatch::Tick, format!("gradient alphas ({})", points.len())),
        (Swatch::Dashed, "F(b) and F(x)".into()),
    ];
    if let Some(s) = &r.split {
        legend.push((
            Swatch::Line(CUT_COLOR),
            format!("split cut at {:.0}% of F's change", 100.0 * s.ratio),
        ));
    }
    draw_legend(&legend_area, &legend)
}

/// Height of the legend strip under each panel's chart: two rows of three entries.
const LEGEND_HEIGHT: u32 = 44;

/// How a legend entry is drawn.
enum Swatch {
    Line(RGBColor),
    Dot(RGBColor),
    Tick,
    Dashed,
}

/// The legend as a strip of entries, three per row, outside the chart so it hides nothing.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(Swatch, String)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let column = area.dim_in_pixel().0 as i32 / 3;
    let font = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (k, (swatch, text)) in entries.iter().enumerate() {
        let (x, y) = (
            70 + (k as i32 % 3) * (column - 20),
            10 + (k as i32 / 3) * 20,
        );
        let segment = [(x, y), (x + 20, y)];
        match swatch {
            Swatch::Line(c) => area.draw(&PathElement::new(segment, c.stroke_width(2)))?,
            Swatch::Dot(c) => area.draw(&Circle::new((x + 10, y), 3, c.filled()))?,
            Swatch::Tick => {
                area.draw(&PathElement::new([(x + 10, y - 6), (x + 10, y + 6)], BLACK))?
            }
            Swatch::Dashed => {
                for dash in [x, x + 8, x + 16] {
                    area.draw(&PathElement::new([(dash, y), (dash + 4, y)], LEVEL_COLOR))?;
                }
            }
        }
        area.draw(&Text::new(text.as_str(), (x + 26, y), font.clone()))?;
    }
    Ok(())
}

/// The plot of `gig study`: median error against budget, log-log, one line per method, the goal as a
/// dashed line; PNG or SVG by `path`'s extension.
pub fn study_plot(path: &Path, rows: &[Row], goal: f64, images: usize) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::Input(format!("{}: cannot draw the plot ({e})", path.display()))
    };
    register_font();
    let size = (800, 520);
    match check_extension(path)? {
        Format::Png => {
            let mut img = RgbImage::new(size.0, size.1);
            draw_study(
                BitMapBackend::with_buffer(&mut img, size).into_drawing_area(),
                rows,
                goal,
                images,
            )
            .map_err(|e| fail(&e))?;
            write_png(&img, path)
        }
        Format::Svg => draw_study(
            SVGBackend::new(path, size).into_drawing_area(),
            rows,
            goal,
            images,
        )
        .map_err(|e| fail(&e)),
    }
}

fn draw_study<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rows: &[Row],
    goal: f64,
    images: usize,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (lo_b, hi_b) = rows.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| {
        (lo.min(r.budget as f64), hi.max(r.budget as f64))
    });
    let (lo_e, hi_e) = rows.iter().fold((goal, goal), |(lo, hi), r| {
        (lo.min(r.median), hi.max(r.median))
    });
    let mut budgets: Vec<f64> = rows.iter().map(|r| r.budget as f64).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("IG error against exact IG, median over {images} held-out digits"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (lo_b * 0.8..hi_b * 1.25)
                .log_scale()
                .with_key_points(budgets.clone()),
            (lo_e * 0.5..hi_e * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("budget (gradient evaluations per image)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("relative L2 error")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    let mut methods: Vec<&str> = rows.iter().map(|r| r.method).collect();
    methods.dedup();
    for (k, m) in methods.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let style = if *m == "adaptive" {
            color.stroke_width(3)
        } else {
            color.stroke_width(1)
        };
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.method == *m)
            .map(|r| (r.budget as f64, r.median))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), style))?
            .label(*m)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            vec![(lo_b * 0.8, goal), (hi_b * 1.25, goal)],
            6,
            4,
            BLACK.stroke_width(1),
        ))?
        .label(format!("goal {goal:.0e}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_by_extension_in_any_case() {
        assert_eq!(check_extension(Path::new("a/p.png")).unwrap(), Format::Png);
        assert_eq!(check_extension(Path::new("P.SVG")).unwrap(), Format::Svg);
        let e = check_extension(Path::new("p.pdf")).unwrap_err().to_string();
        assert!(e.contains("`.pdf`") && e.contains("p.pdf"), "{e}");
    }
}
