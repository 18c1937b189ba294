//! Pictures of attributions: colormaps, Captum's per-sign normalisation, each visual method on inputs
//! small enough to work out by hand, the grid's layout and titles, the colour bar, and the path plot.

use gig::ig::PathReport;
use gig::method::{Probe, Report, SplitReport};
use gig::plot::{self, PANEL_SIZE};
use gig::visualize::{
    self, ABSOLUTE_END, COLORBAR_HEIGHT, GRID_GAP, GridRow, Panel, Sign, Style, TITLE_LINE,
    VisualMethod, normalize,
};
use image::RgbImage;

fn pixels(img: &RgbImage) -> Vec<[u8; 3]> {
    img.pixels().map(|p| p.0).collect()
}

fn is_dark(p: &image::Rgb<u8>) -> bool {
    p.0.iter().all(|&c| c < 100)
}

#[test]
fn colormaps_at_their_ends_and_middle() {
    assert_eq!(Sign::All.color(-1.0), [0, 0, 255]);
    assert_eq!(Sign::All.color(0.0), [255, 255, 255]);
    assert_eq!(Sign::All.color(1.0), [255, 0, 0]);
    assert_eq!(Sign::All.color(0.5), [255, 128, 128]);
    assert_eq!(Sign::All.color(3.0), [255, 0, 0]);

    assert_eq!(Sign::Positive.color(0.0), [255, 255, 255]);
    assert_eq!(Sign::Positive.color(0.5), [255, 128, 128]);
    assert_eq!(Sign::Positive.color(1.0), [255, 0, 0]);
    assert_eq!(Sign::Positive.color(-0.5), [255, 255, 255]);

    assert_eq!(Sign::Negative.color(0.0), [255, 255, 255]);
    assert_eq!(Sign::Negative.color(0.5), [128, 128, 255]);
    assert_eq!(Sign::Negative.color(1.0), [0, 0, 255]);

    assert_eq!(Sign::AbsoluteValue.color(0.0), [255, 255, 255]);
    assert_eq!(Sign::AbsoluteValue.color(1.0), ABSOLUTE_END);
    // Half way from white to (84, 39, 143).
    assert_eq!(Sign::AbsoluteValue.color(0.5), [170, 147, 199]);
    assert_eq!(Sign::AbsoluteValue.color(2.0), ABSOLUTE_END);
}

#[test]
fn normalisation_keeps_one_sign_and_clips_at_the_cumulative_threshold() {
    let attr = [-4.0, -1.0, 0.0, 1.0, 2.0, 8.0];
    // Magnitudes 0, 1, 1, 2, 4, 8 sum to 16; half of it is first reached at 4.
    let all = normalize(&attr, Sign::All, 50.0);
    assert_eq!(all.scale, 4.0);
    assert_eq!(all.values, vec![-1.0, -0.25, 0.0, 0.25, 0.5, 1.0]);
    let abs = normalize(&attr, Sign::AbsoluteValue, 50.0);
    assert_eq!(abs.scale, 4.0);
    assert_eq!(abs.values, vec![1.0, 0.25, 0.0, 0.25, 0.5, 1.0]);
    // Positive parts 1, 2, 8 sum to 11; 5.5 is first reached at 8.
    let pos = normalize(&attr, Sign::Positive, 50.0);
    assert_eq!(pos.scale, 8.0);
    assert_eq!(pos.values, vec![0.0, 0.0, 0.0, 0.125, 0.25, 1.0]);
    // Negative magnitudes 1, 4 sum to 5; 2.5 is first reached at 4.
    let neg = normalize(&attr, Sign::Negative, 50.0);
    assert_eq!(neg.scale, 4.0);
    assert_eq!(neg.values, vec![1.0, 0.25, 0.0, 0.0, 0.0, 0.0]);
    // Without clipping the largest magnitude is the scale.
    assert_eq!(normalize(&attr, Sign::All, 0.0).scale, 8.0);
    // Nothing of the sign: zeros, not NaN.
    let none = normalize(&[1.0, 2.0], Sign::Negative, 2.0);
    assert_eq!(none.values, vec![0.0, 0.0]);
}

/// One grey 2 x 2 input and its attributions: magnitudes 2, 0, 1, 2, so with no outliers the scale
/// is 2.
const SHAPE: [usize; 3] = [1, 2, 2];
const INPUT: [f32; 4] = [0.0, 0.5, 0.25, 1.0];
const ATTR: [f32; 4] = [-2.0, 0.0, 1.0, 2.0];

fn drawn(method: VisualMethod, sign: Sign) -> Vec<[u8; 3]> {
    let style = Style {
        method,
        sign,
        outlier_percent: 0.0,
        scale: 1,
        ..Style::default()
    };
    let img = visualize::render(&INPUT, &ATTR, SHAPE, &style).unwrap();
    assert_eq!(img.dimensions(), (2, 2));
    pixels(&img)
}

#[test]
fn each_visual_method_on_a_hand_made_input() {
    // Normalised: -1, 0, 0.5, 1.
    assert_eq!(
        drawn(VisualMethod::HeatMap, Sign::All),
        vec![[0, 0, 255], [255, 255, 255], [255, 128, 128], [255, 0, 0]]
    );
    // Half the colour plus half the grey input (0, 127.5, 63.75, 255).
    assert_eq!(
        drawn(VisualMethod::BlendedHeatMap, Sign::All),
        vec![[0, 0, 128], [191, 191, 191], [159, 96, 96], [255, 128, 128]]
    );
    // |attr| normalised: 1, 0, 0.5, 1; the input times that.
    assert_eq!(
        drawn(VisualMethod::MaskedImage, Sign::AbsoluteValue),
        vec![[0; 3], [0; 3], [32; 3], [255; 3]]
    );
    // The input at that opacity over white: 0, white, 0.5 * 63.75 + 127.5, 255.
    assert_eq!(
        drawn(VisualMethod::AlphaScaling, Sign::AbsoluteValue),
        vec![[0; 3], [255; 3], [159; 3], [255; 3]]
    );
    // Only the negative pixel survives.
    assert_eq!(
        drawn(VisualMethod::HeatMap, Sign::Negative),
        vec![[0, 0, 255], [255; 3], [255; 3], [255; 3]]
    );
    assert_eq!(
        drawn(VisualMethod::MaskedImage, Sign::Positive),
        vec![[0; 3], [0; 3], [32; 3], [255; 3]]
    );
}

#[test]
fn channels_are_summed_and_rgb_inputs_keep_their_colour() {
    // One RGB pixel: the attributions sum to 1.5 > 0, so the mask is 1 and the pixel is the input.
    let style = Style {
        method: VisualMethod::MaskedImage,
        sign: Sign::Positive,
        scale: 3,
        ..Style::default()
    };
    let img = visualize::render(&[1.0, 0.5, 0.0], &[1.0, 1.0, -0.5], [3, 1, 1], &style).unwrap();
    assert_eq!(img.dimensions(), (3, 3));
    assert!(pixels(&img).iter().all(|p| *p == [255, 128, 0]));
}

#[test]
fn bad_styles_and_names_are_errors_that_name_them() {
    let masked_all = Style {
        method: VisualMethod::MaskedImage,
        sign: Sign::All,
        ..Style::default()
    };
    let e = visualize::render(&INPUT, &ATTR, SHAPE, &masked_all)
        .unwrap_err()
        .to_string();
    assert!(e.contains("masked_image") && e.contains("`all`"), "{e}");
    for bad in [
        Style {
            outlier_percent: 100.0,
            ..Style::default()
        },
        Style {
            blend_alpha: 1.5,
            ..Style::default()
        },
        Style {
            scale: 0,
            ..Style::default()
        },
    ] {
        assert!(bad.check().is_err(), "{bad:?}");
    }
    let e = visualize::render(&INPUT, &ATTR[..3], SHAPE, &Style::default()).unwrap_err();
    assert!(e.to_string().contains("3 values"), "{e}");

    let e = VisualMethod::parse("heatmap").unwrap_err().to_string();
    assert!(
        e.contains("`heatmap`") && e.contains("blended_heat_map"),
        "{e}"
    );
    let e = Sign::parse("both").unwrap_err().to_string();
    assert!(e.contains("`both`") && e.contains("absolute_value"), "{e}");
    for name in VisualMethod::NAMES {
        assert_eq!(VisualMethod::parse(name).unwrap().name(), name);
    }
    for name in Sign::NAMES {
        assert_eq!(Sign::parse(name).unwrap().name(), name);
    }
}

#[test]
fn colour_bar_spans_the_map_and_is_labelled() {
    let style = Style {
        scale: 40,
        ..Style::default()
    };
    let plain = visualize::render(&INPUT, &ATTR, SHAPE, &style).unwrap();
    assert_eq!(plain.dimensions(), (80, 80));
    let barred = visualize::render(
        &INPUT,
        &ATTR,
        SHAPE,
        &Style {
            colorbar: true,
            ..style
        },
    )
    .unwrap();
    assert_eq!(barred.dimensions(), (80, 80 + COLORBAR_HEIGHT));
    // The map itself is unchanged.
    for (x, y, p) in plain.enumerate_pixels() {
        assert_eq!(barred.get_pixel(x, y), p);
    }
    // Below it, a bar from blue to red through white, then tick labels in black.
    let bar_row: Vec<[u8; 3]> = (0..80).map(|x| barred.get_pixel(x, 80 + 10).0).collect();
    assert!(bar_row.contains(&[0, 0, 255]) && bar_row.contains(&[255, 0, 0]));
    assert!(bar_row.contains(&[255, 255, 255]));
    let labels = (0..80)
        .flat_map(|x| (80 + 20..80 + COLORBAR_HEIGHT).map(move |y| (x, y)))
        .filter(|&(x, y)| is_dark(barred.get_pixel(x, y)))
        .count();
    assert!(labels > 10, "no tick labels under the bar");
    // A map too small for its labels still gets a bar, clipped.
    let tiny = Style {
        scale: 1,
        colorbar: true,
        ..style
    };
    let img = visualize::render(&INPUT, &ATTR, SHAPE, &tiny).unwrap();
    assert_eq!(img.dimensions(), (2, 2 + COLORBAR_HEIGHT));
}

fn row(title: &str, panels: &[(&str, VisualMethod, Sign)]) -> GridRow {
    GridRow {
        title: title.into(),
        input: INPUT.to_vec(),
        shape: SHAPE,
        panels: panels
            .iter()
            .map(|&(title, method, sign)| Panel {
                title: title.into(),
                attribution: ATTR.to_vec(),
                method,
                sign,
            })
            .collect(),
    }
}

#[test]
fn grid_lays_out_titled_rows() {
    let style = Style {
        scale: 40,
        outlier_percent: 0.0,
        ..Style::default()
    };
    let panels = [
        ("heat", VisualMethod::HeatMap, Sign::All),
        ("mask", VisualMethod::MaskedImage, Sign::AbsoluteValue),
    ];
    let rows = [row("in", &panels), row("in", &panels)];
    let img = visualize::grid(&rows, &style).unwrap();
    // Three 80-pixel columns (the titles are narrower), two rows of one title line and a map.
    let (gap, side) = (GRID_GAP, 80);
    assert_eq!(img.width(), gap + 3 * (side + gap));
    assert_eq!(img.height(), gap + 2 * (TITLE_LINE + side + gap));
    // Each map is where the layout says, exactly as `render` draws it.
    let heat = visualize::render(&INPUT, &ATTR, SHAPE, &style).unwrap();
    let (left, top) = (gap + side + gap, 2 * gap + TITLE_LINE + side + TITLE_LINE);
    for (x, y, p) in heat.enumerate_pixels() {
        assert_eq!(img.get_pixel(left + x, top + y), p);
    }
    // Titles: dark pixels in every column's title band, none in the gaps between rows.
    for column in 0..3 {
        let x0 = gap + column * (side + gap);
        let dark = (x0..x0 + side)
            .flat_map(|x| (gap..gap + TITLE_LINE).map(move |y| (x, y)))
            .filter(|&(x, y)| is_dark(img.get_pixel(x, y)))
            .count();
        assert!(dark > 5, "column {column} has no title");
    }
    // Without titles there is no title band.
    let untitled = [
        row("", &[("", VisualMethod::HeatMap, Sign::All)]),
        row("", &[]),
    ];
    let img = visualize::grid(&untitled, &style).unwrap();
    assert_eq!(
        img.dimensions(),
        (gap + 2 * (side + gap), gap + 2 * (side + gap))
    );
    // Two-line titles make a two-line band.
    let img = visualize::grid(&[row("input\ntarget 7", &panels)], &style).unwrap();
    assert_eq!(img.height(), gap + 2 * TITLE_LINE + side + gap);
}

#[test]
fn grid_columns_widen_for_long_titles_and_bad_panels_are_named() {
    let style = Style {
        scale: 2,
        ..Style::default()
    };
    let long = "a title much wider than four pixels";
    let img = visualize::grid(
        &[row("x", &[(long, VisualMethod::HeatMap, Sign::All)])],
        &style,
    )
    .unwrap();
    assert!(img.width() > 150, "width {}", img.width());
    let e = visualize::grid(
        &[row(
            "x",
            &[("the mask", VisualMethod::MaskedImage, Sign::All)],
        )],
        &style,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("the mask") && e.contains("masked_image"), "{e}");
    assert!(visualize::grid(&[], &style).is_err());
}

#[test]
fn heatmap_write_puts_each_input_beside_its_signed_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heatmap.png");
    let inputs = [INPUT, INPUT].concat();
    let attrs = [ATTR, ATTR].concat();
    gig::heatmap::write(&path, &inputs, &attrs, SHAPE, 10).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(
        img.dimensions(),
        (
            GRID_GAP + 2 * (20 + GRID_GAP),
            GRID_GAP + 2 * (20 + GRID_GAP)
        )
    );
    // The first map's bottom-right pixel holds the attribution 2; after 2% clipping of the
    // magnitudes 2, 0, 1, 2 the scale is 2, so it is full red.
    assert_eq!(
        img.get_pixel(2 * GRID_GAP + 20 + 15, GRID_GAP + 15).0,
        [255, 0, 0]
    );
}

/// A Split IG report of a saturating F, made by hand.
fn split_report(image: usize) -> Report {
    let alphas: Vec<f64> = (0..8).map(|k| (k as f64 + 0.5) / 8.0).collect();
    let f = |a: f64| 10.0 * (1.0 - (-4.0 * a).exp());
    let probe: Vec<f64> = (0..17).map(|k| k as f64 / 16.0).collect();
    Report {
        image,
        target: 7,
        method: "split",
        f_input: f(1.0),
        f_baseline: 0.0,
        attribution_sum: 8.9,
        expected_sum: 9.0,
        completeness: "F(cut) - F(b)",
        delta: -0.1,
        gradient_evaluations: 8,
        forward_evaluations: 18,
        budget_spent: 14.0,
        rounds: 2,
        error_estimate: None,
        path: PathReport {
            weights: vec![1.0 / 8.0; 8],
            f: alphas.iter().map(|&a| f(a)).collect(),
            grad_norm: alphas.iter().map(|&a| 4.0 * (-4.0 * a).exp()).collect(),
            slope: alphas.iter().map(|&a| 40.0 * (-4.0 * a).exp()).collect(),
            alphas,
        },
        cells: vec![1.0 / 8.0; 8],
        probe: Some(Probe {
            f: probe.iter().map(|&a| f(a)).collect(),
            alphas: probe,
        }),
        split: Some(SplitReport {
            ratio: 0.9,
            alpha: 0.58,
            f_cut: 9.0,
            left_sum: 8.9,
            right_sum: 0.9,
            total_delta: -0.1,
            left_delta: -0.1,
        }),
    }
}

#[test]
fn path_plot_writes_png_panels_and_svg_text() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("path.png");
    plot::path_plot(&png, &[split_report(0), split_report(1)]).unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (PANEL_SIZE.0, 2 * PANEL_SIZE.1));
    // Not blank: axes, curves and text.
    let dark = img.pixels().filter(|p| is_dark(p)).count();
    assert!(dark > 2000, "{dark} dark pixels");

    let svg = dir.path().join("path.svg");
    let mut uniform = split_report(1);
    uniform.split = None;
    uniform.probe = None;
    uniform.method = "gausslegendre";
    plot::path_plot(&svg, &[split_report(0), uniform]).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    for needle in [
        "image 0: split, target 7",
        "image 1: gausslegendre, target 7",
        "cut at alpha 0.580",
        "split cut at 90%",
        "F(x) = 9.817",
        "F(b) = 0.000",
        "|dF/dx|",
        "gradient alphas (8)",
        "forward-only probe (17 points)",
    ] {
        assert!(text.contains(needle), "the SVG lacks `{needle}`");
    }
    assert_eq!(text.matches("cut at alpha").count(), 1);
}

#[test]
fn path_plot_rejects_other_formats_and_unwritable_paths() {
    let dir = tempfile::tempdir().unwrap();
    let e = plot::path_plot(dir.path().join("path.jpg"), &[split_report(0)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`.jpg`") && e.contains(".svg"), "{e}");
    let e = plot::path_plot(dir.path().join("path"), &[split_report(0)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("use .png or .svg"), "{e}");
    assert!(plot::path_plot(dir.path().join("empty.png"), &[]).is_err());
    let nowhere = dir.path().join("no-such-dir").join("path.png");
    let e = plot::path_plot(&nowhere, &[split_report(0)]).unwrap_err();
    assert!(e.to_string().contains("no-such-dir"), "{e}");
}
