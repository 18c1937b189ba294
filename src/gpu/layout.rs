//! Rust mirrors of the structs the kernels read. Keep in sync with shaders/common.wgsl.

use crate::model::{Layer, Shape};
use bytemuck::{Pod, Zeroable};

/// Keep in sync with `Chunk` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ChunkUniform {
    pub grad_rows: u32,
    pub rows: u32,
    pub spans: u32,
    pub images: u32,
    pub first_row: u32,
    pub _pad: [u32; 3],
}

/// Keep in sync with `Row` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RowEntry {
    pub image: u32,
    pub logit: u32,
    pub alpha: f32,
    pub weight: f32,
}

/// Keep in sync with `Span` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SpanEntry {
    pub image: u32,
    pub first_row: u32,
    pub count: u32,
    pub _pad: u32,
}

/// Keep in sync with `Layer` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LayerUniform {
    pub in_c: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub in_len: u32,
    pub out_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub out_len: u32,
    pub kernel_h: u32,
    pub kernel_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_h: u32,
    pub pad_w: u32,
    pub _pad: [u32; 2],
}

impl LayerUniform {
    /// The shape of a layer taking `input` to `output`.
    pub fn new(layer: &Layer, input: Shape, output: Shape) -> LayerUniform {
        let (kernel, stride, padding) = match layer {
            Layer::Conv2d(c) => (c.kernel, c.stride, c.padding),
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => (p.kernel, p.stride, p.padding),
            _ => ([1, 1], [1, 1], [0, 0]),
        };
        let [in_c, in_h, in_w] = input.chw().map(|v| v as u32);
        let [out_c, out_h, out_w] = output.chw().map(|v| v as u32);
        LayerUniform {
            in_c,
            in_h,
            in_w,
            in_len: input.len() as u32,
            out_c,
            out_h,
            out_w,
            out_len: output.len() as u32,
            kernel_h: kernel[0] as u32,
            kernel_w: kernel[1] as u32,
            stride_h: stride[0] as u32,
            stride_w: stride[1] as u32,
            pad_h: padding[0] as u32,
            pad_w: padding[1] as u32,
            _pad: [0; 2],
        }
    }

    /// For the kernels that are not layers: `in_len` values per row in, `out_len` out.
    pub fn lengths(in_len: usize, out_len: usize) -> LayerUniform {
        LayerUniform::new(&Layer::Flatten, Shape::Flat(in_len), Shape::Flat(out_len))
    }
}
