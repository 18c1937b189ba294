//! The GPU engine: a model lowered once to a fixed list of dispatches over named buffers, then run
//! chunk by chunk. Each chunk is one compute pass and one submission covering all of its rows (images x
//! path points); each group of images ends with one readback of attributions and diagnostics.

use super::context::Gpu;
use super::kernels::{Kernel, Pipelines};
use super::layout::{ChunkUniform, LayerUniform, RowEntry, SpanEntry};
use crate::backend::{Backend, Batch, Evaluation, RunStats, check_finite, check_plans};
use crate::error::{Error, Result};
use crate::model::{Layer, Model, layer_name};
use crate::schedule::{Capacity, Chunk, PathPlan, Point, Schedule};
use wgpu::util::DeviceExt;

/// How much of the device the engine may use.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Bytes of device memory for the buffers of one chunk and one group together.
    pub max_memory: u64,
    /// At most this many rows (path points) per chunk; `None`: as many as the limits allow.
    pub max_rows_per_chunk: Option<usize>,
    /// At most this many images per group; `None`: as many as the limits allow.
    pub max_images_per_group: Option<usize>,
}

/// 512 MiB: room for about 2,400 rows of the MNIST CNN per chunk.
pub const DEFAULT_MAX_MEMORY: u64 = 512 << 20;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_memory: DEFAULT_MAX_MEMORY,
            max_rows_per_chunk: None,
            max_images_per_group: None,
        }
    }
}

/// A buffer bound by the program's dispatches, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// The group's images, `dim` values each.
    Inputs,
    Baselines,
    /// The chunk's row table ([`RowEntry`]).
    Rows,
    /// The chunk's span table ([`SpanEntry`]).
    Spans,
    /// The group's running sum of weighted gradients, then its attributions.
    Total,
    /// Two values per row of the group: F and |grad F|.
    Diagnostics,
    /// An activation buffer, `Program::activation_lens[i]` values per row.
    Activation(usize),
    /// One of the two gradient buffers the backward pass alternates between.
    Gradient(usize),
    /// Where each max-pool output's maximum was, `Program::argmax_lens[i]` per row.
    Argmax(usize),
    /// Weights and bias of layer i.
    Weight(usize),
    Bias(usize),
}

/// How many invocations a dispatch needs, given the chunk.
#[derive(Clone, Copy, Debug)]
enum Extent {
    /// n per row.
    Rows(usize),
    /// n per gradient row.
    GradientRows(usize),
    /// n per span.
    Spans(usize),
    /// n per image of the group.
    Images(usize),
    /// One workgroup per row.
    RowWorkgroups,
}

/// One dispatch of the program.
struct Step {
    kernel: Kernel,
    shape: LayerUniform,
    /// Storage bindings 2, 3, ... of the kernel, in order.
    slots: Vec<Slot>,
    extent: Extent,
}

impl Step {
    fn new(kernel: Kernel, shape: LayerUniform, slots: &[Slot], extent: Extent) -> Step {
        Step {
            kernel,
            shape,
            slots: slots.to_vec(),
            extent,
        }
    }
}

/// The model lowered to dispatches. ReLU runs in place (its output doubles as the backward mask) and
/// Flatten is free, so neither gets a buffer of its own.
struct Program {
    /// Path, forward, seed, backward, accumulate, diagnostics: the dispatches of every chunk.
    steps: Vec<Step>,
    /// The last chunk of a group adds this one.
    finish: Step,
    activation_lens: Vec<usize>,
    argmax_lens: Vec<usize>,
    gradient_len: usize,
    /// Activation buffer of `shapes[i]`.
    activation_of: Vec<usize>,
    /// Gradient buffer of `shapes[i]`.
    gradient_of: Vec<usize>,
    /// Step of layer i's forward and backward dispatch (none for Flatten).
    forward_step: Vec<Option<usize>>,
    backward_step: Vec<Option<usize>>,
}

impl Program {
    fn new(model: &Model) -> Program {
        use Slot::*;
        let shapes = model.shapes();
        let layers = model.layers();
        let dim = shapes[0].len();
        let classes = model.classes();
        let mut steps = vec![Step::new(
            Kernel::Path,
            LayerUniform::lengths(dim, dim),
            &[Inputs, Baselines, Rows, Activation(0)],
            Extent::Rows(dim),
        )];
        let mut activation_lens = vec![dim];
        let mut activation_of = vec![0];
        let mut argmax_lens = Vec::new();
        let mut argmax_of = vec![None; layers.len()];
        let mut forward_step = vec![None; layers.len()];

        for (i, layer) in layers.iter().enumerate() {
            let shape = LayerUniform::new(layer, shapes[i], shapes[i + 1]);
            let input = activation_of[i];
            let out_len = shapes[i + 1].len();
            let (kernel, slots) = match layer {
                Layer::Flatten => {
                    activation_of.push(input);
                    continue;
                }
                Layer::Relu => {
                    activation_of.push(input);
                    (Kernel::ReluForward, vec![Activation(input)])
                }
                _ => {
                    let output = activation_lens.len();
                    activation_lens.push(out_len);
                    activation_of.push(output);
                    match layer {
                        Layer::Conv2d(_) => (
                            Kernel::Conv2dForward,
                            vec![Activation(input), Weight(i), Bias(i), Activation(output)],
                        ),
                        Layer::Linear(_) => (
                            Kernel::LinearForward,
                            vec![Activation(input), Weight(i), Bias(i), Activation(output)],
                        ),
                        Layer::MaxPool2d(_) => {
                            argmax_of[i] = Some(argmax_lens.len());
                            argmax_lens.push(out_len);
                            (
                                Kernel::MaxPoolForward,
                                vec![
                                    Activation(input),
                                    Activation(output),
                                    Argmax(argmax_lens.len() - 1),
                                ],
                            )
                        }
                        Layer::AvgPool2d(_) => (
                            Kernel::AvgPoolForward,
                            vec![Activation(input), Activation(output)],
                        ),
                        Layer::Relu | Layer::Flatten => unreachable!(),
                    }
                }
            };
            forward_step[i] = Some(steps.len());
            steps.push(Step::new(kernel, shape, &slots, Extent::Rows(out_len)));
        }

        // Backward: the gradient of the target logit flows from the logits to the input, alternating
        // between two buffers; ReLU and Flatten keep it where it is.
        let mut gradient_of = vec![0; layers.len() + 1];
        let mut backward_step = vec![None; layers.len()];
        steps.push(Step::new(
            Kernel::Seed,
            LayerUniform::lengths(classes, classes),
            &[Rows, Gradient(0)],
            Extent::GradientRows(classes),
        ));
        for (i, layer) in layers.iter().enumerate().rev() {
            let shape = LayerUniform::new(layer, shapes[i], shapes[i + 1]);
            let out = gradient_of[i + 1];
            let (into, kernel, slots) = match layer {
                Layer::Flatten => {
                    gradient_of[i] = out;
                    continue;
                }
                Layer::Relu => (
                    out,
                    Kernel::ReluBackward,
                    vec![Activation(activation_of[i + 1]), Gradient(out)],
                ),
                Layer::Conv2d(_) => (
                    1 - out,
                    Kernel::Conv2dBackward,
                    vec![Gradient(out), Weight(i), Gradient(1 - out)],
                ),
                Layer::Linear(_) => (
                    1 - out,
                    Kernel::LinearBackward,
                    vec![Gradient(out), Weight(i), Gradient(1 - out)],
                ),
                Layer::MaxPool2d(_) => (
                    1 - out,
                    Kernel::MaxPoolBackward,
                    vec![
                        Gradient(out),
                        Argmax(argmax_of[i].unwrap()),
                        Gradient(1 - out),
                    ],
                ),
                Layer::AvgPool2d(_) => (
                    1 - out,
                    Kernel::AvgPoolBackward,
                    vec![Gradient(out), Gradient(1 - out)],
                ),
            };
            gradient_of[i] = into;
            backward_step[i] = Some(steps.len());
            steps.push(Step::new(
                kernel,
                shape,
                &slots,
                Extent::GradientRows(shapes[i].len()),
            ));
        }
        let input_gradient = Gradient(gradient_of[0]);
        steps.push(Step::new(
            Kernel::Accumulate,
            LayerUniform::lengths(dim, dim),
            &[input_gradient, Rows, Spans, Total],
            Extent::Spans(dim),
        ));
        steps.push(Step::new(
            Kernel::Diagnostics,
            LayerUniform::lengths(dim, classes),
            &[
                input_gradient,
                Activation(activation_of[layers.len()]),
                Rows,
                Diagnostics,
            ],
            Extent::RowWorkgroups,
        ));
        let finish = Step::new(
            Kernel::Finish,
            LayerUniform::lengths(dim, dim),
            &[Inputs, Baselines, Total],
            Extent::Images(dim),
        );
        Program {
            steps,
            finish,
            activation_lens,
            argmax_lens,
            gradient_len: shapes.iter().map(|s| s.len()).max().unwrap(),
            activation_of,
            gradient_of,
            forward_step,
            backward_step,
        }
    }

    /// Bytes per row of each per-row buffer.
    fn row_buffer_bytes(&self) -> Vec<u64> {
        let f = |n: usize| 4 * n as u64;
        let mut v: Vec<u64> = self.activation_lens.iter().map(|&n| f(n)).collect();
        v.extend(self.argmax_lens.iter().map(|&n| f(n)));
        v.extend([f(self.gradient_len), f(self.gradient_len)]);
        v.extend([size_of::<RowEntry>() as u64, size_of::<SpanEntry>() as u64]);
        v
    }
}

/// How many rows, images and group rows the current buffers hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sizes {
    rows: usize,
    images: usize,
    group_rows: usize,
}

/// Everything sized by [`Sizes`], with the bind groups that reference it.
struct Buffers {
    sizes: Sizes,
    inputs: wgpu::Buffer,
    baselines: wgpu::Buffer,
    total: wgpu::Buffer,
    diagnostics: wgpu::Buffer,
    rows: wgpu::Buffer,
    spans: wgpu::Buffer,
    activations: Vec<wgpu::Buffer>,
    argmax: Vec<wgpu::Buffer>,
    gradients: [wgpu::Buffer; 2],
    readback: wgpu::Buffer,
    /// One per program step, then the finish step's.
    bind_groups: Vec<wgpu::BindGroup>,
}

/// Weights of one layer on the device.
struct LayerWeights {
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
}

/// The GPU implementation of [`Backend`].
pub struct Engine {
    gpu: Gpu,
    model: Model,
    options: EngineOptions,
    pipelines: Pipelines,
    program: Program,
    weights: Vec<Option<LayerWeights>>,
    chunk_uniform: wgpu::Buffer,
    step_uniforms: Vec<wgpu::Buffer>,
    finish_uniform: wgpu::Buffer,
    buffers: Option<Buffers>,
}

fn storage(device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        // Bindings need at least one element; 16 bytes covers every element type here.
        size: bytes.max(16).next_multiple_of(4),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

impl Engine {
    /// Uploads the model's weights and compiles the kernels on `gpu`'s device.
    pub fn new(gpu: &Gpu, model: &Model, options: EngineOptions) -> Result<Engine> {
        let device = &gpu.device;
        let limits = device.limits();
        if limits.max_storage_buffers_per_shader_stage < 4 {
            return Err(Error::Gpu(format!(
                "the device allows {} storage buffers per shader stage; gig's kernels need 4",
                limits.max_storage_buffers_per_shader_stage
            )));
        }
        let binding_limit = gpu.binding_limit();
        let mut weights = Vec::new();
        for (i, layer) in model.layers().iter().enumerate() {
            let Some(p) = model.params(i) else {
                weights.push(None);
                continue;
            };
            let bytes = 4 * p.weight.len() as u64;
            if bytes > binding_limit {
                return Err(Error::Gpu(format!(
                    "{}: its weights take {bytes} bytes but the device binds at most {binding_limit}",
                    layer_name(i, layer)
                )));
            }
            let out = layer.param_shapes().unwrap().0[0];
            let bias = if p.bias.is_empty() {
                vec![0.0; out]
            } else {
                p.bias.clone()
            };
            let upload = |label: &str, data: &[f32]| {
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(data),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                })
            };
            weights.push(Some(LayerWeights {
                weight: upload("weight", &p.weight),
                bias: upload("bias", &bias),
            }));
        }
        let program = Program::new(model);
        let uniform = |label: &str, contents: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
        };
        let step_uniforms = program
            .steps
            .iter()
            .map(|s| uniform(s.kernel.name(), bytemuck::bytes_of(&s.shape)))
            .collect();
        let finish_uniform = uniform("finish", bytemuck::bytes_of(&program.finish.shape));
        let chunk_uniform = uniform("chunk", bytemuck::bytes_of(&ChunkUniform::default()));
        Ok(Engine {
            gpu: gpu.clone(),
            model: model.clone(),
            options,
            pipelines: Pipelines::new(device)?,
            program,
            weights,
            chunk_uniform,
            step_uniforms,
            finish_uniform,
            buffers: None,
        })
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Dispatches per chunk with gradient rows (the finish dispatch of a group's last chunk not counted).
    pub fn dispatches_per_chunk(&self) -> usize {
        self.program.steps.len()
    }

    /// The largest chunk and group the device limits and the memory budget allow.
    pub fn capacity(&self) -> Result<Capacity> {
        let limits = self.gpu.limits();
        let binding = self.gpu.binding_limit();
        let max_groups = u64::from(limits.max_compute_workgroups_per_dimension);
        let max_invocations = max_groups * max_groups * u64::from(Kernel::WORKGROUP_SIZE);
        let dim = self.model.input_len() as u64;
        let per_row = self.program.row_buffer_bytes();
        let widest_row = *per_row.iter().max().unwrap();
        let row_bytes: u64 = per_row.iter().sum();
        let widest_invocations = (widest_row / 4).max(1);

        if 4 * dim > binding {
            return Err(Error::Gpu(format!(
                "one input image takes {} bytes but the device binds at most {binding} bytes at once",
                4 * dim
            )));
        }
        // inputs, baselines, total, readback: dim values each.
        let image_bytes = 4 * 4 * dim;
        let images = [
            binding / (4 * dim),
            max_invocations / dim,
            self.options.max_memory / 4 / image_bytes,
            self.options.max_images_per_group.unwrap_or(usize::MAX) as u64,
        ]
        .into_iter()
        .min()
        .unwrap()
        .max(1);
        let left = self.options.max_memory.saturating_sub(images * image_bytes);
        let rows = [
            binding / widest_row,
            max_invocations / widest_invocations,
            max_groups * max_groups,
            left / row_bytes,
            self.options.max_rows_per_chunk.unwrap_or(usize::MAX) as u64,
        ]
        .into_iter()
        .min()
        .unwrap();
        if rows == 0 {
            return Err(Error::Gpu(format!(
                "one path point of this model needs {row_bytes} bytes of buffers (the largest {widest_row}); \
                 the memory budget is {} bytes and the device binds at most {binding} bytes at once; \
                 raise --max-memory",
                self.options.max_memory
            )));
        }
        Ok(Capacity {
            rows_per_chunk: rows.min(usize::MAX as u64) as usize,
            images_per_group: images.min(usize::MAX as u64) as usize,
        })
    }

    /// Makes sure the buffers hold `need`, growing them (and rebuilding bind groups) if not.
    fn ensure_buffers(&mut self, need: Sizes) -> Result<()> {
        let have = self.buffers.as_ref().map(|b| b.sizes).unwrap_or_default();
        if have.rows >= need.rows
            && have.images >= need.images
            && have.group_rows >= need.group_rows
        {
            return Ok(());
        }
        let sizes = Sizes {
            rows: have.rows.max(need.rows),
            images: have.images.max(need.images),
            group_rows: have.group_rows.max(need.group_rows),
        };
        self.buffers = None;
        let device = &self.gpu.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffers = self.create_buffers(sizes);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "allocating buffers for {} rows and {} images failed ({e}); lower --max-memory",
                sizes.rows, sizes.images
            )));
        }
        self.buffers = Some(buffers);
        Ok(())
    }

    fn create_buffers(&self, sizes: Sizes) -> Buffers {
        let device = &self.gpu.device;
        let p = &self.program;
        let rows = sizes.rows as u64;
        let image_bytes = 4 * (sizes.images * self.model.input_len()) as u64;
        let readback_bytes = [
            image_bytes + 8 * sizes.group_rows as u64,
            4 * rows * p.gradient_len as u64,
            4 * rows * p.activation_lens.iter().max().copied().unwrap_or(0) as u64,
        ]
        .into_iter()
        .max()
        .unwrap();
        let mut b = Buffers {
            sizes,
            inputs: storage(device, "inputs", image_bytes),
            baselines: storage(device, "baselines", image_bytes),
            total: storage(device, "total", image_bytes),
            diagnostics: storage(device, "diagnostics", 8 * sizes.group_rows as u64),
            rows: storage(device, "rows", rows * size_of::<RowEntry>() as u64),
            spans: storage(device, "spans", rows * size_of::<SpanEntry>() as u64),
            activations: p
                .activation_lens
                .iter()
                .map(|&n| storage(device, "activation", 4 * rows * n as u64))
                .collect(),
            argmax: p
                .argmax_lens
                .iter()
                .map(|&n| storage(device, "argmax", 4 * rows * n as u64))
                .collect(),
            gradients: [0, 1]
                .map(|_| storage(device, "gradient", 4 * rows * p.gradient_len as u64)),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: readback_bytes.max(16).next_multiple_of(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            bind_groups: Vec::new(),
        };
        let steps = p
            .steps
            .iter()
            .zip(&self.step_uniforms)
            .chain([(&p.finish, &self.finish_uniform)]);
        b.bind_groups = steps.map(|(s, u)| self.bind_group(&b, s, u)).collect();
        b
    }

    fn slot<'a>(&'a self, b: &'a Buffers, slot: Slot) -> &'a wgpu::Buffer {
        let weights = |i: usize| self.weights[i].as_ref().expect("layer without weights");
        match slot {
            Slot::Inputs => &b.inputs,
            Slot::Baselines => &b.baselines,
            Slot::Rows => &b.rows,
            Slot::Spans => &b.spans,
            Slot::Total => &b.total,
            Slot::Diagnostics => &b.diagnostics,
            Slot::Activation(i) => &b.activations[i],
            Slot::Gradient(i) => &b.gradients[i],
            Slot::Argmax(i) => &b.argmax[i],
            Slot::Weight(i) => &weights(i).weight,
            Slot::Bias(i) => &weights(i).bias,
        }
    }

    fn bind_group(&self, b: &Buffers, step: &Step, uniform: &wgpu::Buffer) -> wgpu::BindGroup {
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 0,
                resource: self.chunk_uniform.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: uniform.as_entire_binding(),
            },
        ];
        for (i, &slot) in step.slots.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 2 + i as u32,
                resource: self.slot(b, slot).as_entire_binding(),
            });
        }
        self.gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(step.kernel.name()),
                layout: &self.pipelines.get(step.kernel).get_bind_group_layout(0),
                entries: &entries,
            })
    }

    /// Workgroups for `n` invocations (or `n` workgroups): one dimension when it fits, else two.
    fn grid(&self, workgroups: u32) -> (u32, u32) {
        let max = self.gpu.limits().max_compute_workgroups_per_dimension;
        if workgroups <= max {
            (workgroups, 1)
        } else {
            (max, workgroups.div_ceil(max))
        }
    }

    /// Records one step; returns whether it dispatched anything.
    fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        step: &Step,
        bind_group: &wgpu::BindGroup,
        c: &ChunkUniform,
    ) -> bool {
        let invocations = |per: usize, count: u32| per as u64 * u64::from(count);
        let workgroups = match step.extent {
            Extent::Rows(n) => invocations(n, c.rows).div_ceil(u64::from(Kernel::WORKGROUP_SIZE)),
            Extent::GradientRows(n) => {
                invocations(n, c.grad_rows).div_ceil(u64::from(Kernel::WORKGROUP_SIZE))
            }
            Extent::Spans(n) => invocations(n, c.spans).div_ceil(u64::from(Kernel::WORKGROUP_SIZE)),
            Extent::Images(n) => {
                invocations(n, c.images).div_ceil(u64::from(Kernel::WORKGROUP_SIZE))
            }
            Extent::RowWorkgroups => u64::from(c.rows),
        };
        if workgroups == 0 {
            return false;
        }
        let (x, y) = self.grid(workgroups as u32);
        pass.set_pipeline(self.pipelines.get(step.kernel));
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
        true
    }

    /// Submits `encoder` (which ends with copies into the readback buffer), waits, and returns the
    /// readback buffer's contents.
    fn read_back(&self, encoder: wgpu::CommandEncoder, stats: &mut RunStats) -> Result<Vec<f32>> {
        let b = self.buffers.as_ref().unwrap();
        self.gpu.queue.submit([encoder.finish()]);
        stats.submissions += 1;
        stats.readbacks += 1;
        let slice = b.readback.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.gpu.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("the readback was dropped".into()))?
            .map_err(|e| Error::Gpu(format!("reading results back failed: {e}")))?;
        let values = bytemuck::cast_slice::<u8, f32>(
            &slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(e.to_string()))?,
        )
        .to_vec();
        b.readback.unmap();
        Ok(values)
    }

    fn write_chunk(
        &self,
        batch: &Batch,
        plans: &[PathPlan],
        group_start: usize,
        images: usize,
        chunk: &Chunk,
    ) -> ChunkUniform {
        let b = self.buffers.as_ref().unwrap();
        let rows: Vec<RowEntry> = chunk
            .rows
            .iter()
            .map(|r| {
                let plan = &plans[r.image];
                let (alpha, weight) = match r.point {
                    Point::Gradient(k) => (plan.gradient.alphas[k], plan.gradient.weights[k]),
                    Point::Forward(k) => (plan.forward[k], 0.0),
                };
                RowEntry {
                    image: (r.image - group_start) as u32,
                    logit: batch.targets[r.image] as u32,
                    alpha: alpha as f32,
                    weight: weight as f32,
                }
            })
            .collect();
        let spans: Vec<SpanEntry> = chunk
            .spans
            .iter()
            .map(|s| SpanEntry {
                image: (s.image - group_start) as u32,
                first_row: s.first_row as u32,
                count: s.count as u32,
                _pad: 0,
            })
            .collect();
        let uniform = ChunkUniform {
            grad_rows: chunk.gradient_rows as u32,
            rows: chunk.rows.len() as u32,
            spans: spans.len() as u32,
            images: images as u32,
            first_row: chunk.first_row as u32,
            _pad: [0; 3],
        };
        let q = &self.gpu.queue;
        q.write_buffer(&self.chunk_uniform, 0, bytemuck::bytes_of(&uniform));
        q.write_buffer(&b.rows, 0, bytemuck::cast_slice(&rows));
        if !spans.is_empty() {
            q.write_buffer(&b.spans, 0, bytemuck::cast_slice(&spans));
        }
        uniform
    }

    /// Runs every image's plan; with `logits`, also returns the logits of every row (one readback per chunk).
    fn run(
        &mut self,
        batch: &Batch,
        plans: &[PathPlan],
        mut logits: Option<&mut Vec<Vec<f32>>>,
    ) -> Result<Evaluation> {
        check_plans(batch, plans)?;
        let dim = batch.dim;
        let mut capacity = self.capacity()?;
        // Diagnostics hold 8 bytes per row of a group: keep them within one binding too.
        let binding = self.gpu.binding_limit();
        let widest_plan = plans
            .iter()
            .map(|p| p.gradient.len() + p.forward.len())
            .max()
            .unwrap_or(1)
            .max(1) as u64;
        capacity.images_per_group = capacity
            .images_per_group
            .min((binding / (8 * widest_plan)).max(1) as usize);
        let schedule = Schedule::new(plans, capacity);
        self.ensure_buffers(Sizes {
            rows: schedule.max_chunk_rows(),
            images: schedule.max_group_images(),
            group_rows: schedule.max_group_rows(),
        })?;

        let scope = self
            .gpu
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let mut out = Evaluation::zeros(plans, dim);
        let stats = &mut out.stats;
        stats.backend = "gpu".into();
        stats.device = self.gpu.describe();
        let b = self.buffers.as_ref().unwrap();
        let q = &self.gpu.queue;
        let classes = self.model.classes();
        let logits_buffer = &b.activations[*self.program.activation_of.last().unwrap()];
        for group in &schedule.groups {
            let images = group.images.clone();
            let values = |v: &[f32]| {
                bytemuck::cast_slice::<f32, u8>(&v[images.start * dim..images.end * dim]).to_vec()
            };
            q.write_buffer(&b.inputs, 0, &values(&batch.inputs));
            q.write_buffer(&b.baselines, 0, &values(&batch.baselines));
            stats.groups += 1;
            for (ci, chunk) in group.chunks.iter().enumerate() {
                let last = ci + 1 == group.chunks.len();
                let uniform = self.write_chunk(batch, plans, images.start, images.len(), chunk);
                let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
                if ci == 0 {
                    encoder.clear_buffer(&b.total, 0, None);
                }
                {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("chunk"),
                        timestamp_writes: None,
                    });
                    for (step, bind_group) in self.program.steps.iter().zip(&b.bind_groups) {
                        stats.dispatches +=
                            self.record(&mut pass, step, bind_group, &uniform) as usize;
                    }
                    if last {
                        stats.dispatches += self.record(
                            &mut pass,
                            &self.program.finish,
                            b.bind_groups.last().unwrap(),
                            &uniform,
                        ) as usize;
                    }
                }
                stats.chunks += 1;
                stats.gradient_rows += chunk.gradient_rows;
                stats.forward_rows += chunk.rows.len() - chunk.gradient_rows;
                if let Some(all) = logits.as_deref_mut() {
                    // Forward-only runs (predictions) read each chunk's logits instead of attributions.
                    let bytes = 4 * (chunk.rows.len() * classes) as u64;
                    encoder.copy_buffer_to_buffer(logits_buffer, 0, &b.readback, 0, bytes);
                    let v = self.read_back(encoder, stats)?;
                    all.extend(
                        v[..chunk.rows.len() * classes]
                            .chunks(classes)
                            .map(<[f32]>::to_vec),
                    );
                    continue;
                }
                if !last {
                    self.gpu.queue.submit([encoder.finish()]);
                    stats.submissions += 1;
                    continue;
                }
                let attribution_bytes = 4 * (images.len() * dim) as u64;
                encoder.copy_buffer_to_buffer(&b.total, 0, &b.readback, 0, attribution_bytes);
                encoder.copy_buffer_to_buffer(
                    &b.diagnostics,
                    0,
                    &b.readback,
                    attribution_bytes,
                    8 * group.rows as u64,
                );
                let v = self.read_back(encoder, stats)?;
                let (attributions, diagnostics) = v.split_at(images.len() * dim);
                for (o, a) in out.attributions[images.start * dim..images.end * dim]
                    .iter_mut()
                    .zip(attributions)
                {
                    *o = f64::from(*a);
                }
                for c in &group.chunks {
                    for (r, row) in c.rows.iter().enumerate() {
                        let at = 2 * (c.first_row + r);
                        let (f, norm) =
                            (f64::from(diagnostics[at]), f64::from(diagnostics[at + 1]));
                        match row.point {
                            Point::Gradient(k) => {
                                out.gradient_f[row.image][k] = f;
                                out.gradient_norm[row.image][k] = norm;
                            }
                            Point::Forward(k) => out.forward_f[row.image][k] = f,
                        }
                    }
                }
            }
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("the device rejected a command: {e}")));
        }
        Ok(out)
    }

    /// Runs layer `layer`'s forward kernel alone on `input` (whole rows of the layer's input shape).
    pub fn layer_forward(&mut self, layer: usize, input: &[f32]) -> Result<Vec<f32>> {
        let rows = input.len() / self.model.shapes()[layer].len();
        let out_len = self.model.shapes()[layer + 1].len();
        let v = self.run_layer(layer, input, None)?;
        Ok(v[..rows * out_len].to_vec())
    }

    /// Runs layer `layer`'s forward then backward kernel alone: the gradient with respect to `input`
    /// given `grad_output`, the gradient of the layer's output.
    pub fn layer_backward(
        &mut self,
        layer: usize,
        input: &[f32],
        grad_output: &[f32],
    ) -> Result<Vec<f32>> {
        let v = self.run_layer(layer, input, Some(grad_output))?;
        Ok(v[..input.len()].to_vec())
    }

    fn run_layer(
        &mut self,
        layer: usize,
        input: &[f32],
        grad_output: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let shapes = self.model.shapes();
        let (in_len, out_len) = (shapes[layer].len(), shapes[layer + 1].len());
        let rows = input.len() / in_len;
        if rows == 0
            || rows * in_len != input.len()
            || grad_output.is_some_and(|g| g.len() != rows * out_len)
        {
            return Err(Error::Input(format!(
                "layer input must be whole rows of {in_len} values and the output gradient rows of {out_len}"
            )));
        }
        self.ensure_buffers(Sizes {
            rows,
            images: 1,
            group_rows: rows,
        })?;
        let b = self.buffers.as_ref().unwrap();
        let p = &self.program;
        let q = &self.gpu.queue;
        let uniform = ChunkUniform {
            grad_rows: rows as u32,
            rows: rows as u32,
            ..Default::default()
        };
        q.write_buffer(&self.chunk_uniform, 0, bytemuck::bytes_of(&uniform));
        q.write_buffer(
            &b.activations[p.activation_of[layer]],
            0,
            bytemuck::cast_slice(input),
        );
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        let mut stats = RunStats::default();
        let run_step = |encoder: &mut wgpu::CommandEncoder, step: Option<usize>| {
            if let Some(s) = step {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                self.record(&mut pass, &p.steps[s], &b.bind_groups[s], &uniform);
            }
        };
        run_step(&mut encoder, p.forward_step[layer]);
        let result = match grad_output {
            None => &b.activations[p.activation_of[layer + 1]],
            Some(g) => {
                // The forward pass above is recorded in `encoder`, so submit it before overwriting the
                // gradient buffer through the queue.
                q.submit([std::mem::replace(
                    &mut encoder,
                    self.gpu.device.create_command_encoder(&Default::default()),
                )
                .finish()]);
                q.write_buffer(
                    &b.gradients[p.gradient_of[layer + 1]],
                    0,
                    bytemuck::cast_slice(g),
                );
                run_step(&mut encoder, p.backward_step[layer]);
                &b.gradients[p.gradient_of[layer]]
            }
        };
        let bytes = 4 * (rows * in_len.max(out_len)) as u64;
        encoder.copy_buffer_to_buffer(result, 0, &b.readback, 0, bytes.min(result.size()));
        self.read_back(encoder, &mut stats)
    }
}

impl Backend for Engine {
    fn model(&self) -> &Model {
        &self.model
    }

    fn evaluate(&mut self, batch: &Batch, plans: &[PathPlan]) -> Result<Evaluation> {
        self.run(batch, plans, None)
    }

    fn logits(&mut self, inputs: &[f32]) -> Result<Vec<Vec<f64>>> {
        let dim = self.model.input_len();
        check_finite("inputs", inputs, dim)?;
        let n = inputs.len() / dim;
        let batch = Batch {
            inputs: inputs.to_vec(),
            baselines: inputs.to_vec(),
            targets: vec![0; n],
            dim,
        };
        let plans = vec![
            PathPlan {
                gradient: crate::quadrature::Quadrature {
                    alphas: vec![],
                    weights: vec![],
                },
                forward: vec![1.0],
            };
            n
        ];
        let mut logits = Vec::with_capacity(n);
        self.run(&batch, &plans, Some(&mut logits))?;
        Ok(logits
            .into_iter()
            .map(|l| l.into_iter().map(f64::from).collect())
            .collect())
    }

    fn device(&self) -> String {
        self.gpu.describe()
    }
}
