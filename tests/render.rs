//! Attributions drawn into a texture on the device equal the CPU rendering of the same attributions
//! (channel sum, Captum's clip scale, the diverging colormap), texel for texel.

mod common;
use common::*;
use gig::gpu::{Atlas, AttributionTexture, TEXTURE_FORMAT};
use gig::heatmap::{OUTLIER_PERCENT, clip_scale, diverging};
use gig::{Batch, Model, Rule, integrated_gradients};

/// The texture's texels, read back (the library never does this; the test must).
fn read_texture(gpu: &gig::Gpu, t: &AttributionTexture) -> (Vec<u8>, u32) {
    let [w, h] = t.atlas.size();
    let row = (4 * w).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read texture"),
        size: u64::from(row * h),
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        t.texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: None,
            },
        },
        t.texture.size(),
    );
    gpu.queue.submit([encoder.finish()]);
    buffer
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.unwrap());
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .unwrap();
    let bytes = buffer.slice(..).get_mapped_range().unwrap().to_vec();
    (bytes, row)
}

/// The CPU rendering of image i's attributions: RGBA8 per pixel.
fn cpu_texels(values: &[f64], i: usize, channels: usize, plane: usize) -> Vec<[u8; 4]> {
    let dim = channels * plane;
    let map: Vec<f32> = (0..plane)
        .map(|p| {
            (0..channels)
                .map(|c| values[i * dim + c * plane + p])
                .sum::<f64>() as f32
        })
        .collect();
    let scale = clip_scale(&map, OUTLIER_PERCENT);
    map.iter()
        .map(|v| {
            let [r, g, b] = diverging(v / scale);
            [r, g, b, 255]
        })
        .collect()
}

/// Compares every image of the atlas with the CPU rendering; returns the share of exact texels.
fn compare(model: &Model, batch: &Batch, steps: usize) -> f64 {
    let q = Rule::GaussLegendre.nodes(steps).unwrap();
    let mut engine = engine(model);
    let t = engine
        .attribute_to_texture(batch, &q, OUTLIER_PERCENT)
        .unwrap();
    assert_eq!(t.stats.readbacks, 0, "nothing is read back");
    assert_eq!(t.texture.format(), TEXTURE_FORMAT);
    let ig = integrated_gradients(&mut engine, batch, &q).unwrap();
    let (texels, row) = read_texture(gpu(), &t);
    let [channels, h, w] = model.input_shape();
    let atlas: Atlas = t.atlas;
    let (mut exact, mut total) = (0, 0);
    for i in 0..batch.len() {
        let want = cpu_texels(&ig.values, i, channels, h * w);
        let [x0, y0] = atlas.origin(i);
        for y in 0..h {
            for x in 0..w {
                let at = ((y0 as usize + y) * row as usize) + (x0 as usize + x) * 4;
                let got = &texels[at..at + 4];
                let w4 = want[y * w + x];
                let off = got
                    .iter()
                    .zip(w4)
                    .map(|(&g, w)| (i32::from(g) - i32::from(w)).abs())
                    .max()
                    .unwrap();
                assert!(
                    off <= 1,
                    "image {i} pixel ({x}, {y}): GPU {got:?}, CPU {w4:?}"
                );
                exact += usize::from(off == 0);
                total += 1;
            }
        }
    }
    // Cells after the last image are transparent black.
    let cells = (atlas.columns * atlas.rows) as usize;
    for i in batch.len()..cells {
        let [x0, y0] = atlas.origin(i);
        let at = (y0 as usize * row as usize) + x0 as usize * 4;
        assert_eq!(&texels[at..at + 4], &[0, 0, 0, 0]);
    }
    exact as f64 / total as f64
}

#[test]
fn texture_equals_the_cpu_colormap() {
    let model = Model::random_from_arch(
        "conv(2,4,3,p1) relu maxpool2 flatten linear(36,3)",
        [2, 6, 6],
        8,
    )
    .unwrap();
    let batch = random_batch(&model, 5, 31, (0.0, 0.2));
    let exact = compare(&model, &batch, 12);
    assert!(exact > 0.99, "only {exact} of the texels are exact");
}

#[test]
fn the_shipped_model_on_digits() {
    let model = Model::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/mnist_cnn.safetensors"
    ))
    .unwrap();
    let digits: Vec<std::path::PathBuf> = [3, 7]
        .iter()
        .map(|d| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("assets/digits/{d}.png"))
        })
        .collect();
    let x = gig::Tensor::read_images(&digits, model.input_shape()).unwrap();
    let batch = Batch::new(&model, x.data.clone(), vec![0.0; x.data.len()], vec![3, 7]).unwrap();
    let exact = compare(&model, &batch, 16);
    assert!(exact > 0.99, "only {exact} of the texels are exact");
}

#[test]
fn zero_attributions_are_white() {
    // Baseline = input: every attribution is zero, the scale falls back to 1 and the map is white.
    let model = Model::random_from_arch("flatten linear(16,2)", [1, 4, 4], 2).unwrap();
    let x = uniform(32, 0.0, 1.0, 5);
    let batch = Batch::new(&model, x.clone(), x, vec![0, 1]).unwrap();
    let t = engine(&model)
        .attribute_to_texture(&batch, &Rule::GaussLegendre.nodes(4).unwrap(), 2.0)
        .unwrap();
    let (texels, row) = read_texture(gpu(), &t);
    for i in 0..2 {
        let [x0, y0] = t.atlas.origin(i);
        for y in 0..4 {
            for x in 0..4 {
                let at = ((y0 as usize + y) * row as usize) + (x0 as usize + x) * 4;
                assert_eq!(&texels[at..at + 4], &[255, 255, 255, 255]);
            }
        }
    }
}

#[test]
fn bad_requests_are_errors() {
    let model = Model::random_from_arch("flatten linear(16,2)", [1, 4, 4], 2).unwrap();
    let batch = random_batch(&model, 1, 3, (0.0, 0.1));
    let mut e = engine(&model);
    let empty = gig::Quadrature {
        alphas: vec![],
        weights: vec![],
    };
    assert!(
        e.attribute_to_texture(&batch, &empty, 2.0)
            .unwrap_err()
            .to_string()
            .contains("zero steps")
    );
    let q = Rule::GaussLegendre.nodes(4).unwrap();
    assert!(
        e.attribute_to_texture(&batch, &q, 100.0)
            .unwrap_err()
            .to_string()
            .contains("outlier percent")
    );
    assert!(
        Atlas::new(5, [28, 28], 64)
            .unwrap_err()
            .to_string()
            .contains("draw fewer images")
    );
}
