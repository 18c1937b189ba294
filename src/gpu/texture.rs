//! Attributions drawn straight into a texture on the engine's device, for a renderer to sample: the
//! GPU twin of the heatmaps in `heatmap.rs` (channel sum, Captum's clip scale, the diverging colormap),
//! computed by shaders/colormap.wgsl right after each group's attributions, with nothing read back.

use super::context::Gpu;
use super::engine::Engine;
use super::kernels::{Kernel, Spec};
use crate::backend::{Backend, Batch, RunStats};
use crate::error::{Error, Result};
use crate::quadrature::Quadrature;
use crate::schedule::PathPlan;
use bytemuck::{Pod, Zeroable};
use std::ops::Range;
use wgpu::util::DeviceExt;

/// The texel format of attribution textures: the colormap's bytes as they are (no sRGB decoding).
pub const TEXTURE_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

const WORKGROUP_SIZE: usize = 256;

/// The colormap kernel walks every pair of pixels of a map, and sums up to this many 16-bit limbs.
pub const MAX_PIXELS: usize = 65535;

/// Keep in sync with `Colormap` in shaders/colormap.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct ColormapUniform {
    first_image: u32,
    images: u32,
    outlier_hundredths: u32,
    _pad: u32,
}

/// Where the images lie in an attribution texture: a grid of `columns` x `rows` cells of one image's
/// `width` x `height` pixels, image i in column `i % columns` of row `i / columns`. Cells after the last
/// image are transparent black.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Atlas {
    pub images: u32,
    pub width: u32,
    pub height: u32,
    pub columns: u32,
    pub rows: u32,
}

impl Atlas {
    /// A grid about as wide as it is tall, within `max_dimension` texels each way.
    pub fn new(images: usize, [height, width]: [usize; 2], max_dimension: u32) -> Result<Atlas> {
        let max = max_dimension as usize;
        if images == 0 || width == 0 || height == 0 {
            return Err(Error::Input("no pixels to draw".into()));
        }
        if width > max {
            return Err(Error::Gpu(format!(
                "images {width} pixels wide do not fit the device's textures ({max} texels)"
            )));
        }
        let square = images.isqrt();
        let columns = (square + usize::from(square * square < images)).min(max / width);
        let rows = images.div_ceil(columns);
        if height * rows > max {
            return Err(Error::Gpu(format!(
                "{images} images of {width} x {height} need a texture of {} x {} texels but the device allows \
                 {max_dimension}; draw fewer images at once",
                width * columns,
                height * rows
            )));
        }
        Ok(Atlas {
            images: images as u32,
            width: width as u32,
            height: height as u32,
            columns: columns as u32,
            rows: rows as u32,
        })
    }

    /// Width and height of the whole texture.
    pub fn size(&self) -> [u32; 2] {
        [self.width * self.columns, self.height * self.rows]
    }

    /// The texel of image `image`'s top left pixel.
    pub fn origin(&self, image: usize) -> [u32; 2] {
        let i = image as u32;
        [
            (i % self.columns) * self.width,
            (i / self.columns) * self.height,
        ]
    }

    /// Bytes per texel row in the staging buffer, padded as `copy_buffer_to_texture` needs.
    pub fn row_bytes(&self) -> u32 {
        (4 * self.size()[0]).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT)
    }

    /// The colormap kernel's specialization for images of `channels` channels.
    pub fn spec(&self, channels: usize) -> Spec {
        let plane = (self.width * self.height) as usize;
        // PLANE magnitudes below 2^(FRACTION_BITS + 1) units each must sum below 2^64.
        let fraction_bits = 63 - plane.next_power_of_two().trailing_zeros() as usize;
        Spec::default()
            .u32("WORKGROUP_SIZE", WORKGROUP_SIZE)
            .u32("CHANNELS", channels)
            .u32("PLANE", plane)
            .u32("WIDTH", self.width as usize)
            .u32("HEIGHT", self.height as usize)
            .u32("COLUMNS", self.columns as usize)
            .u32("ROW_WORDS", self.row_bytes() as usize / 4)
            .u32("FRACTION_BITS", fraction_bits)
    }
}

/// Colour-mapped attributions in a texture on the engine's device (see
/// [`Engine::attribute_to_texture`]).
#[derive(Debug)]
pub struct AttributionTexture {
    /// [`TEXTURE_FORMAT`], usable as `TEXTURE_BINDING | COPY_SRC | COPY_DST`.
    pub texture: wgpu::Texture,
    pub atlas: Atlas,
    /// What ran: `readbacks` is 0.
    pub stats: RunStats,
}

impl AttributionTexture {
    pub fn view(&self) -> wgpu::TextureView {
        self.texture.create_view(&Default::default())
    }
}

impl Engine {
    /// Integrated Gradients of every image in `batch` with `quadrature`, drawn as [`heatmap`]'s maps
    /// (channel sum, scaled by `clip_scale(map, outlier_percent)` to the diverging colormap) into a new
    /// texture on the engine's device, one atlas cell per image ([`Atlas`]).
    ///
    /// Nothing is read back (timestamps aside, while profiling): the attributions go from the
    /// engine's buffer through the colormap kernel into the texture, all on the device, and so the
    /// diagnostics that [`crate::integrated_gradients`] reports (completeness delta, F along the path)
    /// are not available here. The commands are submitted when this returns; a renderer that samples
    /// the texture in a later submission on the same queue sees it finished. `outlier_percent` is
    /// rounded to hundredths of a percent.
    ///
    /// [`heatmap`]: crate::heatmap
    pub fn attribute_to_texture(
        &mut self,
        batch: &Batch,
        quadrature: &Quadrature,
        outlier_percent: f64,
    ) -> Result<AttributionTexture> {
        if quadrature.is_empty() {
            return Err(Error::Input(
                "zero steps: IG needs at least one gradient evaluation".into(),
            ));
        }
        if !(0.0..100.0).contains(&outlier_percent) {
            return Err(Error::Input(format!(
                "outlier percent {outlier_percent} is outside [0, 100)"
            )));
        }
        let [channels, height, width] = self.model().input_shape();
        if height * width > MAX_PIXELS {
            return Err(Error::Input(format!(
                "images of {width} x {height} pixels: the colormap kernel takes at most {MAX_PIXELS}"
            )));
        }
        let gpu = self.gpu().clone();
        let atlas = Atlas::new(
            batch.len(),
            [height, width],
            gpu.limits().max_texture_dimension_2d,
        )?;
        let texels = texel_buffer(&gpu, &atlas)?;
        let mut colormap = Colormap {
            gpu: gpu.clone(),
            pipeline: gpu
                .pipelines
                .get(&gpu.device, Kernel::Colormap, &atlas.spec(channels))?,
            texels: &texels,
            maps: None,
            plane: height * width,
            dim: batch.dim,
            outlier_hundredths: (outlier_percent * 100.0).round() as u32,
        };
        // No forward points: F(b) and F(x) serve only the completeness check, which needs a readback.
        let plans = vec![PathPlan::new(quadrature.clone(), Vec::new()); batch.len()];
        let stats = self.evaluate_on_device(batch, &plans, &mut |encoder, buffer, images| {
            colormap.record(encoder, buffer, images)
        })?;
        let [w, h] = atlas.size();
        let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("attributions"),
            size: wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: TEXTURE_FORMAT,
            usage: wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::COPY_SRC
                | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: &texels,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(atlas.row_bytes()),
                    rows_per_image: None,
                },
            },
            texture.as_image_copy(),
            texture.size(),
        );
        gpu.queue.submit([encoder.finish()]);
        Ok(AttributionTexture {
            texture,
            atlas,
            stats,
        })
    }
}

/// The atlas's texels, packed RGBA8, rows padded to [`Atlas::row_bytes`]; zero (transparent) where
/// no image lies.
fn texel_buffer(gpu: &Gpu, atlas: &Atlas) -> Result<wgpu::Buffer> {
    let bytes = u64::from(atlas.row_bytes()) * u64::from(atlas.size()[1]);
    if bytes > gpu.binding_limit() {
        return Err(Error::Gpu(format!(
            "{} images take {bytes} bytes of texels but the device binds at most {} bytes; draw fewer \
             images at once",
            atlas.images,
            gpu.binding_limit()
        )));
    }
    Ok(gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("texels"),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    }))
}

/// The first `bytes` of `buffer`.
fn binding(buffer: &wgpu::Buffer, bytes: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: 0,
        size: wgpu::BufferSize::new(bytes),
    })
}

/// Records the colormap kernel over each group's attributions as the engine hands them over.
struct Colormap<'a> {
    gpu: Gpu,
    pipeline: wgpu::ComputePipeline,
    texels: &'a wgpu::Buffer,
    /// Scratch for the group's maps, grown as needed (no larger than the attributions, which the
    /// engine keeps within the binding limit).
    maps: Option<wgpu::Buffer>,
    plane: usize,
    dim: usize,
    outlier_hundredths: u32,
}

impl Colormap<'_> {
    fn record(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        attributions: &wgpu::Buffer,
        images: Range<usize>,
    ) -> Result<()> {
        let device = &self.gpu.device;
        let n = images.len();
        let maps_bytes = (4 * self.plane * n) as u64;
        if self.maps.as_ref().is_none_or(|m| m.size() < maps_bytes) {
            self.maps = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("maps"),
                size: maps_bytes,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }));
        }
        // Built per group like the bind group: cheap, and nothing to keep in step with the queue.
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("colormap"),
            contents: bytemuck::bytes_of(&ColormapUniform {
                first_image: images.start as u32,
                images: n as u32,
                outlier_hundredths: self.outlier_hundredths,
                _pad: 0,
            }),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("colormap"),
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: binding(attributions, (4 * self.dim * n) as u64),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: binding(self.maps.as_ref().unwrap(), maps_bytes),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: self.texels.as_entire_binding(),
                },
            ],
        });
        let max = self.gpu.limits().max_compute_workgroups_per_dimension as usize;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("colormap"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        // One workgroup per image, in two dimensions past the device's limit on one.
        pass.dispatch_workgroups(n.min(max) as u32, n.div_ceil(max) as u32, 1);
        Ok(())
    }
}
