//! Attributions in a renderer, headless: opens a wgpu device as a renderer would, hands it to gig,
//! computes Integrated Gradients of a shipped digit straight into a texture, draws that texture
//! scaled up with a render pipeline into an offscreen target, and reads the frame back once to save
//! it as PNG. The attributions themselves are never read back.
//!
//! cargo run --release --example render -- [OUT.png] [DIGIT]   (defaults: render.png, 3)

use gig::gpu::AttributionTexture;
use gig::heatmap::OUTLIER_PERCENT;
use gig::{Batch, Engine, EngineOptions, Gpu, Model, Rule, Tensor};
use image::RgbaImage;

/// Each attribution pixel becomes SCALE x SCALE pixels of the frame.
pub const SCALE: u32 = 8;

/// The frame's format: the attribution texels pass through unchanged (no sRGB encoding).
const FRAME_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

const SHADER: &str = r#"
@group(0) @binding(0) var attributions: texture_2d<f32>;
@group(0) @binding(1) var nearest: sampler;

struct Varyings {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
}

// One triangle whose inner square covers the screen, uv (0, 0) at the top left and (1, 1) at the
// bottom right: no vertex buffer needed.
@vertex
fn vs(@builtin(vertex_index) i: u32) -> Varyings {
    let uv = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    var out: Varyings;
    out.position = vec4<f32>(2.0 * uv.x - 1.0, 1.0 - 2.0 * uv.y, 0.0, 1.0);
    out.uv = uv;
    return out;
}

@fragment
fn fs(v: Varyings) -> @location(0) vec4<f32> {
    return textureSample(attributions, nearest, v.uv);
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "render.png".into());
    let digit: usize = args.next().map_or(Ok(3), |d| d.parse())?;
    let root = env!("CARGO_MANIFEST_DIR");

    // The renderer's device. gig adopts it: the texture it makes lives here.
    let (device, queue) = open_device()?;
    let gpu = Gpu::from_device(device.clone(), queue.clone());
    println!("device: {}", gpu.describe());

    let model = Model::load(format!("{root}/assets/mnist_cnn.safetensors"))?;
    let image = Tensor::read_images(
        &[format!("{root}/assets/digits/{digit}.png")],
        model.input_shape(),
    )?;
    let baseline = vec![0.0; image.data.len()];
    let batch = Batch::new(&model, image.data, baseline, vec![digit])?;
    let mut engine = Engine::new(&gpu, &model, EngineOptions::default())?;
    let attribution =
        engine.attribute_to_texture(&batch, &Rule::GaussLegendre.nodes(32)?, OUTLIER_PERCENT)?;
    println!(
        "attributions of digit {digit}: {} x {} texture, {} readbacks",
        attribution.atlas.size()[0],
        attribution.atlas.size()[1],
        attribution.stats.readbacks
    );

    let frame = draw(&device, &queue, &attribution, SCALE)?;
    frame.save(&out)?;
    println!("wrote {out} ({} x {})", frame.width(), frame.height());
    Ok(())
}

/// A device as a renderer without a window would open one (`WGPU_BACKEND` picks the backend).
pub fn open_device() -> Result<(wgpu::Device, wgpu::Queue), Box<dyn std::error::Error>> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))?;
    Ok(pollster::block_on(
        adapter.request_device(&wgpu::DeviceDescriptor::default()),
    )?)
}

/// Draws the attribution texture, each texel `scale` x `scale` pixels, into an offscreen target and
/// reads that frame back.
pub fn draw(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    attribution: &AttributionTexture,
    scale: u32,
) -> Result<RgbaImage, Box<dyn std::error::Error>> {
    let [w, h] = attribution.atlas.size();
    let (width, height) = (w * scale, h * scale);
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("frame"),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: FRAME_FORMAT,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("draw attributions"),
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("draw attributions"),
        layout: None,
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs"),
            compilation_options: Default::default(),
            buffers: &[],
        },
        primitive: wgpu::PrimitiveState::default(),
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs"),
            compilation_options: Default::default(),
            targets: &[Some(FRAME_FORMAT.into())],
        }),
        multiview_mask: None,
        cache: None,
    });
    // Nearest: every attribution pixel stays a sharp square.
    let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
        mag_filter: wgpu::FilterMode::Nearest,
        min_filter: wgpu::FilterMode::Nearest,
        ..Default::default()
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("draw attributions"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::TextureView(&attribution.view()),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::Sampler(&sampler),
            },
        ],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let view = target.create_view(&Default::default());
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("frame"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                    store: wgpu::StoreOp::Store,
                },
            })],
            ..Default::default()
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.draw(0..3, 0..1);
    }
    // The one readback: the finished frame, rows padded as copies need.
    let row_bytes = (4 * width).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("frame readback"),
        size: u64::from(row_bytes * height),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    encoder.copy_texture_to_buffer(
        target.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &readback,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row_bytes),
                rows_per_image: None,
            },
        },
        target.size(),
    );
    queue.submit([encoder.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    readback.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    device.poll(wgpu::PollType::wait_indefinitely())?;
    rx.recv()??;
    let pixels = readback
        .get_mapped_range(..)?
        .chunks(row_bytes as usize)
        .flat_map(|row| &row[..4 * width as usize])
        .copied()
        .collect();
    Ok(RgbaImage::from_raw(width, height, pixels).unwrap())
}
