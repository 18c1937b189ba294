//! Rust mirrors of the structs the kernels read. Keep in sync with shaders/common.wgsl.

use bytemuck::{Pod, Zeroable};

/// Keep in sync with `Chunk` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ChunkUniform {
    pub grad_rows: u32,
    pub rows: u32,
    pub spans: u32,
    pub images: u32,
    pub slots: u32,
    pub idg: u32,
    pub _pad: [u32; 2],
}

/// Keep in sync with `Row` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RowEntry {
    pub image: u32,
    pub logit: u32,
    pub alpha: f32,
    pub weight: f32,
    pub cell: f32,
    pub slot: u32,
    /// Written by diagnostics.wgsl.
    pub f: f32,
    pub grad_norm: f32,
    pub slope: f32,
    pub probe: f32,
    /// 1 for the first row of its group to add to its accumulator.
    pub fresh: u32,
    pub _pad: u32,
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

/// Keep in sync with `Step` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct StepUniform {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub correction1: f32,
    pub correction2: f32,
    pub count: u32,
    pub _pad: [u32; 3],
}
