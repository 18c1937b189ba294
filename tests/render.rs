//! Attribution textures against the CPU heatmap (`heatmap::clip_scale` and `heatmap::diverging` on the
//! same attributions), and the example's render pipeline drawing them.

mod common;
use common::*;
use gig::gpu::{Atlas, AttributionTexture};
use gig::heatmap::{OUTLIER_PERCENT, clip_scale, diverging};
use gig::model::Params;
use gig::{Batch, Engine, EngineOptions, Model, Quadrature, Rule, Tensor, integrated_gradients};

#[path = "../examples/render.rs"]
#[allow(dead_code)]
mod example;

/// The texture's texels, row by row (a readback for the test only).
fn read_texture(texture: &wgpu::Texture) -> Vec<[u8; 4]> {
    let gpu = gpu();
    let size = texture.size();
    let row_bytes = (4 * size.width).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: u64::from(row_bytes * size.height),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row_bytes),
                rows_per_image: None,
            },
        },
        size,
    );
    gpu.queue.submit([encoder.finish()]);
    buffer.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    gpu.wait().unwrap();
    let view = buffer.get_mapped_range(..).unwrap();
    view.chunks(row_bytes as usize)
        .flat_map(|row| row[..4 * size.width as usize].chunks(4))
        .map(|t| t.try_into().unwrap())
        .collect()
}

/// The CPU heatmap of each image of `attributions` (channel sums scaled by the clip scale), RGBA.
fn cpu_maps(attributions: &[f64], [c, h, w]: [usize; 3]) -> Vec<Vec<[u8; 4]>> {
    attributions
        .chunks(c * h * w)
        .map(|image| {
            // f32 like the GPU's, summed over channels in the same order.
            let map: Vec<f32> = (0..h * w)
                .map(|p| (0..c).map(|ch| image[ch * h * w + p] as f32).sum())
                .collect();
            let k = clip_scale(&map, OUTLIER_PERCENT);
            map.iter()
                .map(|&v| {
                    let [r, g, b] = diverging(v / k);
                    [r, g, b, 255]
                })
                .collect()
        })
        .collect()
}

/// Checks every atlas cell against the CPU heatmap: within 1 per channel (an f32 division rounding
/// across a half), and almost every texel exactly; empty cells transparent.
fn assert_matches_cpu(t: &AttributionTexture, attributions: &[f64], shape: [usize; 3]) {
    let texels = read_texture(&t.texture);
    let atlas = t.atlas;
    let [width, height] = atlas.size();
    assert_eq!(texels.len(), (width * height) as usize);
    let expected = cpu_maps(attributions, shape);
    assert_eq!(expected.len(), atlas.images as usize);
    let (mut exact, mut total) = (0, 0);
    for cell in 0..(atlas.columns * atlas.rows) as usize {
        let [x0, y0] = atlas.origin(cell);
        for y in 0..atlas.height {
            for x in 0..atlas.width {
                let got = texels[((y0 + y) * width + x0 + x) as usize];
                let Some(map) = expected.get(cell) else {
                    assert_eq!(got, [0; 4], "cell {cell} has no image");
                    continue;
                };
                let want = map[(y * atlas.width + x) as usize];
                let worst = (0..4).map(|i| got[i].abs_diff(want[i])).max().unwrap();
                assert!(
                    worst <= 1,
                    "image {cell} pixel ({x}, {y}): GPU {got:?}, CPU {want:?}"
                );
                exact += usize::from(worst == 0);
                total += 1;
            }
        }
    }
    assert!(
        exact * 1000 >= total * 995,
        "only {exact} of {total} texels exact"
    );
}

fn digits(model: &Model, labels: &[usize]) -> Batch {
    let paths: Vec<String> = labels
        .iter()
        .map(|d| format!("{}/assets/digits/{d}.png", env!("CARGO_MANIFEST_DIR")))
        .collect();
    let x = Tensor::read_images(&paths, model.input_shape()).unwrap();
    let baselines = vec![0.0; x.data.len()];
    Batch::new(model, x.data, baselines, labels.to_vec()).unwrap()
}

fn mnist() -> Model {
    Model::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/mnist_cnn.safetensors"
    ))
    .unwrap()
}

#[test]
fn digits_texture_equals_cpu_heatmap_without_readback() {
    let model = mnist();
    let batch = digits(&model, &[3, 7]);
    let q = Rule::GaussLegendre.nodes(16).unwrap();
    let mut engine = engine(&model);
    let t = engine
        .attribute_to_texture(&batch, &q, OUTLIER_PERCENT)
        .unwrap();
    assert_eq!(t.stats.readbacks, 0);
    assert_eq!(t.stats.gradient_rows, 2 * 16);
    assert_eq!(t.atlas.size(), [56, 28]);
    let ig = integrated_gradients(&mut engine, &batch, &q).unwrap();
    assert_matches_cpu(&t, &ig.values, model.input_shape());
}

#[test]
fn several_groups_and_channels_fill_the_atlas_in_order() {
    // Three channels on a non-square image; two images per group, so five images take three groups and
    // the 3 x 2 atlas keeps one cell empty.
    let model = Model::random_from_arch(
        "conv(3,4,3,p1) relu maxpool2 flatten linear(120,5)",
        [3, 6, 20],
        7,
    )
    .unwrap();
    let n = 5;
    let batch = Batch::new(
        &model,
        uniform(n * model.input_len(), 0.0, 1.0, 70),
        uniform(n * model.input_len(), 0.0, 0.3, 71),
        (0..n).map(|i| i % 5).collect(),
    )
    .unwrap();
    let options = EngineOptions {
        max_images_per_group: Some(2),
        ..EngineOptions::default()
    };
    let mut engine = Engine::new(gpu(), &model, options).unwrap();
    let q = Rule::RiemannMiddle.nodes(8).unwrap();
    let t = engine
        .attribute_to_texture(&batch, &q, OUTLIER_PERCENT)
        .unwrap();
    assert_eq!((t.stats.groups, t.stats.readbacks), (3, 0));
    assert_eq!((t.atlas.columns, t.atlas.rows), (3, 2));
    let ig = integrated_gradients(&mut engine, &batch, &q).unwrap();
    assert_matches_cpu(&t, &ig.values, model.input_shape());
}

/// F = sum of the inputs: IG of the baseline 0 is the input itself, so the maps are chosen freely.
fn identity_attributions(maps: &[Vec<f32>]) -> (Model, AttributionTexture, Vec<f64>) {
    let side = maps[0].len().isqrt();
    let base = Model::random_from_arch(
        &format!("flatten linear({},1)", side * side),
        [1, side, side],
        0,
    )
    .unwrap();
    let params = vec![
        None,
        Some(Params {
            weight: vec![1.0; side * side],
            bias: vec![0.0],
        }),
    ];
    let model = Model::new(base.layers().to_vec(), [1, side, side], params).unwrap();
    let inputs: Vec<f32> = maps.concat();
    let batch = Batch::new(
        &model,
        inputs.clone(),
        vec![0.0; inputs.len()],
        vec![0; maps.len()],
    )
    .unwrap();
    let q = Quadrature {
        alphas: vec![0.5],
        weights: vec![1.0],
    };
    let mut engine = engine(&model);
    let t = engine
        .attribute_to_texture(&batch, &q, OUTLIER_PERCENT)
        .unwrap();
    let ig = integrated_gradients(&mut engine, &batch, &q).unwrap();
    assert_eq!(ig.values, to_f64(&inputs), "IG of F = sum(x) is x");
    (model, t, ig.values)
}

#[test]
fn clip_scale_is_exact_on_ties_outliers_and_wide_ranges() {
    let n = 100;
    // The threshold reached exactly: 98 ones, a two and a zero hold 100; 98% is reached at the last one.
    let mut exact = vec![1.0f32; n];
    exact[17] = -2.0;
    exact[60] = 0.0;
    // Ties of one magnitude with both signs, and a few larger values.
    let ties: Vec<f32> = (0..n)
        .map(|i| match i % 7 {
            0 => 3.0,
            3 => -0.25,
            _ if i % 2 == 0 => 0.25,
            _ => -1.5,
        })
        .collect();
    // One outlier holding nearly all the mass: it is its own scale.
    let mut outlier: Vec<f32> = (0..n).map(|i| (i as f32 - 50.0) * 1e-3).collect();
    outlier[42] = 1e6;
    // Magnitudes from 1e-40 (subnormal) to 1e30, beyond the fixed-point range of the largest.
    let wide: Vec<f32> = (0..n)
        .map(|i| 10f32.powi(i as i32 % 71 - 40) * if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    // Signed 1..=100 as in heatmap's unit test (scale 99).
    let ramp: Vec<f32> = (1..=n)
        .map(|i| if i % 2 == 0 { i as f32 } else { -(i as f32) })
        .collect();
    // Uniform noise, where no rounding luck helps.
    let noise: Vec<f32> = uniform(n, -1.0, 1.0, 5);
    let maps = [exact, ties, outlier, wide, ramp, noise];
    assert_eq!(clip_scale(&maps[0], OUTLIER_PERCENT), 1.0);
    assert_eq!(clip_scale(&maps[4], OUTLIER_PERCENT), 99.0);
    let (model, t, values) = identity_attributions(&maps);
    assert_matches_cpu(&t, &values, model.input_shape());
}

#[test]
fn zero_attributions_are_white() {
    // Inputs equal to their baselines: every attribution is 0, the scale 1, every texel white.
    let model = mnist();
    let x = uniform(model.input_len(), 0.0, 1.0, 3);
    let batch = Batch::new(&model, x.clone(), x, vec![4]).unwrap();
    let t = engine(&model)
        .attribute_to_texture(
            &batch,
            &Rule::RiemannLeft.nodes(4).unwrap(),
            OUTLIER_PERCENT,
        )
        .unwrap();
    assert!(read_texture(&t.texture).iter().all(|&p| p == [255; 4]));
    assert_matches_cpu(&t, &vec![0.0; model.input_len()], model.input_shape());
}

#[test]
fn bad_requests_are_refused() {
    let model = mnist();
    let batch = digits(&model, &[1]);
    let mut engine = engine(&model);
    let q = Rule::GaussLegendre.nodes(4).unwrap();
    assert!(engine.attribute_to_texture(&batch, &q, 100.0).is_err());
    assert!(engine.attribute_to_texture(&batch, &q, -1.0).is_err());
    let none = Quadrature {
        alphas: vec![],
        weights: vec![],
    };
    assert!(engine.attribute_to_texture(&batch, &none, 2.0).is_err());
}

#[test]
fn atlas_grids_stay_within_the_texture_limit() {
    let a = Atlas::new(10, [28, 28], 8192).unwrap();
    assert_eq!((a.columns, a.rows, a.size()), (4, 3, [112, 84]));
    assert_eq!(a.origin(5), [28, 28]);
    // Too wide for a square grid: as many columns as fit.
    let a = Atlas::new(30, [10, 30], 100).unwrap();
    assert_eq!((a.columns, a.rows), (3, 10));
    assert!(Atlas::new(30, [10, 30], 90).is_err());
    assert!(Atlas::new(1, [10, 30], 20).is_err());
}

#[test]
fn example_draws_the_texture_scaled_up() {
    let model = mnist();
    let batch = digits(&model, &[2, 5, 8]);
    let t = engine(&model)
        .attribute_to_texture(
            &batch,
            &Rule::GaussLegendre.nodes(8).unwrap(),
            OUTLIER_PERCENT,
        )
        .unwrap();
    let scale = 3;
    let frame = example::draw(&gpu().device, &gpu().queue, &t, scale).unwrap();
    let [w, h] = t.atlas.size();
    assert_eq!(frame.dimensions(), (w * scale, h * scale));
    let texels = read_texture(&t.texture);
    for (x, y, p) in frame.enumerate_pixels() {
        let want = texels[((y / scale) * w + x / scale) as usize];
        assert_eq!(p.0, want, "frame pixel ({x}, {y})");
    }
}
