//! The GPU engine: runs a model's [`Program`] chunk by chunk. Each chunk is one compute pass and one
//! submission covering all of its rows (images x path points); each group of images ends with one
//! readback of attributions and diagnostics.

use super::context::Gpu;
use super::layout::{ChunkUniform, RowEntry, SpanEntry};
use super::profile::Profiler;
use super::program::{Count, Dispatch, Extent, Program, Slot, Tiling};
use crate::backend::{Backend, Batch, Evaluation, RunStats, check_finite, check_plans};
use crate::error::{Error, Result};
use crate::model::{Model, layer_name};
use crate::schedule::{Capacity, Chunk, PathPlan, Point, Schedule};
use wgpu::util::DeviceExt;

/// How much of the device the engine may use, and how it lowers the model.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Bytes of device memory for the buffers of one chunk and one group together.
    pub max_memory: u64,
    /// At most this many rows (path points) per chunk; `None`: as many as the limits allow.
    pub max_rows_per_chunk: Option<usize>,
    /// At most this many images per group; `None`: as many as the limits allow.
    pub max_images_per_group: Option<usize>,
    /// Register tiles of the layer kernels; `None`: chosen for the adapter ([`Tiling::for_adapter`]).
    pub tiling: Option<Tiling>,
    /// Fuse ReLUs and the seed into neighbouring kernels (see `program.rs`); off runs every layer alone.
    pub fuse: bool,
}

/// 512 MiB: room for about 2,400 rows of the MNIST CNN per chunk.
pub const DEFAULT_MAX_MEMORY: u64 = 512 << 20;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_memory: DEFAULT_MAX_MEMORY,
            max_rows_per_chunk: None,
            max_images_per_group: None,
            tiling: None,
            fuse: true,
        }
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
    /// One per program dispatch, then the finish dispatch's.
    bind_groups: Vec<wgpu::BindGroup>,
}

/// The GPU implementation of [`Backend`].
pub struct Engine {
    gpu: Gpu,
    model: Model,
    options: EngineOptions,
    program: Program,
    /// Per program dispatch, then finish.
    pipelines: Vec<wgpu::ComputePipeline>,
    /// Weights then bias of each layer that has them.
    params: Vec<Option<wgpu::Buffer>>,
    chunk_uniform: wgpu::Buffer,
    buffers: Option<Buffers>,
    profiler: Option<Profiler>,
}

/// GPU time of one dispatch of the program, summed over the chunks of the profiled runs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    /// e.g. `conv2d_forward (layer 3)`.
    pub label: String,
    pub seconds: f64,
    /// Chunks it ran in.
    pub runs: usize,
    /// Floating-point operations it performed (counted per row from the layer's shapes).
    pub flops: f64,
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
    /// Uploads the model's weights and compiles its kernels on `gpu`'s device.
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
        let mut params = Vec::new();
        for (i, layer) in model.layers().iter().enumerate() {
            let Some(p) = model.params(i) else {
                params.push(None);
                continue;
            };
            let outputs = layer.param_shapes().unwrap().0[0];
            let mut data = p.weight.clone();
            data.extend(if p.bias.is_empty() {
                vec![0.0; outputs]
            } else {
                p.bias.clone()
            });
            // Whole vec4s, so the uniform form of the kernels can read the last one.
            data.resize(data.len().next_multiple_of(4), 0.0);
            if 4 * data.len() as u64 > binding_limit {
                return Err(Error::Gpu(format!(
                    "{}: its weights take {} bytes but the device binds at most {binding_limit}",
                    layer_name(i, layer),
                    4 * data.len()
                )));
            }
            params.push(Some(device.create_buffer_init(
                &wgpu::util::BufferInitDescriptor {
                    label: Some("params"),
                    contents: bytemuck::cast_slice(&data),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
                },
            )));
        }
        let tiling = options
            .tiling
            .unwrap_or_else(|| Tiling::for_adapter(&gpu.info));
        let program = Program::new(
            model,
            &tiling,
            options.fuse,
            limits.max_uniform_buffer_binding_size,
        );
        let pipelines = program
            .dispatches
            .iter()
            .chain([&program.finish])
            .map(|d| gpu.pipelines.get(device, d.kernel, &d.spec))
            .collect::<Result<Vec<_>>>()?;
        let chunk_uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("chunk"),
            contents: bytemuck::bytes_of(&ChunkUniform::default()),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
        Ok(Engine {
            gpu: gpu.clone(),
            model: model.clone(),
            options,
            program,
            pipelines,
            params,
            chunk_uniform,
            buffers: None,
            profiler: None,
        })
    }

    /// Times every dispatch of the following runs (each gets a compute pass of its own with
    /// timestamps); needs a device with `TIMESTAMP_QUERY`.
    pub fn start_profiling(&mut self) -> Result<()> {
        let dispatches = self.program.dispatches.len() + 1;
        self.profiler = Some(Profiler::new(
            &self.gpu.device,
            &self.gpu.queue,
            dispatches,
        )?);
        Ok(())
    }

    /// GPU time per dispatch since [`Engine::start_profiling`], which this stops.
    pub fn take_profile(&mut self) -> Option<Vec<KernelTime>> {
        let p = self.profiler.take()?;
        let flops = self.flops_per_dispatch_row();
        let ds = self.program.dispatches.iter().chain([&self.program.finish]);
        Some(
            ds.enumerate()
                .map(|(i, d)| KernelTime {
                    label: d.label.clone(),
                    seconds: p.seconds[i],
                    runs: p.runs[i],
                    flops: flops[i] * p.rows[i] as f64,
                })
                .collect(),
        )
    }

    /// Floating-point operations of one gradient evaluation: every dispatch's work for one row forward
    /// and backward (a multiply-add counts two).
    pub fn flops_per_evaluation(&self) -> f64 {
        let per_row = |d: &&Dispatch| {
            matches!(
                d.extent,
                Extent::Tiles { .. }
                    | Extent::Invocations {
                        of: Count::Rows | Count::GradRows,
                        ..
                    }
            )
        };
        self.program
            .dispatches
            .iter()
            .filter(per_row)
            .map(|d| d.flops_per_row)
            .sum()
    }

    /// Bytes of activations and gradients one gradient evaluation reads and writes (see `Dispatch`).
    pub fn bytes_per_evaluation(&self) -> f64 {
        let per_row = |d: &&Dispatch| {
            matches!(
                d.extent,
                Extent::Tiles { .. }
                    | Extent::Invocations {
                        of: Count::Rows | Count::GradRows,
                        ..
                    }
            )
        };
        self.program
            .dispatches
            .iter()
            .filter(per_row)
            .map(|d| d.bytes_per_row)
            .sum()
    }

    /// Floating-point operations per row of each dispatch (then finish), from the layer shapes.
    fn flops_per_dispatch_row(&self) -> Vec<f64> {
        self.program
            .dispatches
            .iter()
            .chain([&self.program.finish])
            .map(|d| d.flops_per_row)
            .collect()
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Dispatches per chunk with gradient rows (the finish dispatch of a group's last chunk not counted).
    pub fn dispatches_per_chunk(&self) -> usize {
        self.program.dispatches.len()
    }

    /// What each dispatch of a chunk is, in order (then `finish`).
    pub fn dispatch_labels(&self) -> Vec<String> {
        self.program
            .dispatches
            .iter()
            .chain([&self.program.finish])
            .map(|d| d.label.clone())
            .collect()
    }

    /// The largest chunk and group the device limits and the memory budget allow.
    pub fn capacity(&self) -> Result<Capacity> {
        let limits = self.gpu.limits();
        let binding = self.gpu.binding_limit();
        let max_groups = u64::from(limits.max_compute_workgroups_per_dimension);
        let max_workgroups = max_groups * max_groups;
        let dim = self.model.input_len() as u64;
        let per_row = self
            .program
            .row_buffer_bytes(size_of::<RowEntry>(), size_of::<SpanEntry>());
        let widest_row = *per_row.iter().max().unwrap();
        let row_bytes: u64 = per_row.iter().sum();
        if 4 * dim > binding {
            return Err(Error::Gpu(format!(
                "one input image takes {} bytes but the device binds at most {binding} bytes at once",
                4 * dim
            )));
        }
        // Rows per dispatch are bounded by the widest grid: the most workgroups per row of any dispatch.
        let workgroups_per_row = self
            .program
            .dispatches
            .iter()
            .map(|d| match d.extent {
                Extent::Invocations { per, .. } => (per as u64).div_ceil(64),
                Extent::Tiles { tiles, .. } => tiles as u64,
                Extent::Workgroups { .. } => 1,
            })
            .max()
            .unwrap_or(1);
        // inputs, baselines, total, readback: dim values each.
        let image_bytes = 4 * 4 * dim;
        let images = [
            binding / (4 * dim),
            max_workgroups * 64 / dim,
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
            max_workgroups / workgroups_per_row,
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
        let dispatches = p.dispatches.iter().chain([&p.finish]);
        b.bind_groups = dispatches
            .zip(&self.pipelines)
            .map(|(d, pl)| self.bind_group(&b, d, pl))
            .collect();
        b
    }

    fn slot<'a>(&'a self, b: &'a Buffers, slot: Slot) -> &'a wgpu::Buffer {
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
            Slot::Params(i) => self.params[i].as_ref().expect("layer without weights"),
        }
    }

    fn bind_group(
        &self,
        b: &Buffers,
        d: &Dispatch,
        pipeline: &wgpu::ComputePipeline,
    ) -> wgpu::BindGroup {
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: self.chunk_uniform.as_entire_binding(),
        }];
        for &(binding, slot) in &d.bindings {
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: self.slot(b, slot).as_entire_binding(),
            });
        }
        self.gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&d.label),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
    }

    /// Workgroups `d` needs for chunk `c`.
    fn workgroups(d: &Dispatch, c: &ChunkUniform) -> u64 {
        let count = |of: Count| count(of, c);
        let size = d.spec.get("WORKGROUP_SIZE").unwrap_or(64) as u64;
        match d.extent {
            Extent::Invocations { per, of } => (per as u64 * count(of)).div_ceil(size),
            Extent::Tiles {
                tiles,
                rows_per_workgroup,
                of,
            } => count(of).div_ceil(rows_per_workgroup as u64) * tiles as u64,
            Extent::Workgroups { of } => count(of),
        }
    }

    /// Records dispatch `i` (`dispatches.len()` for finish); returns whether it dispatched anything.
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, i: usize, c: &ChunkUniform) -> bool {
        let b = self.buffers.as_ref().unwrap();
        let d = self
            .program
            .dispatches
            .get(i)
            .unwrap_or(&self.program.finish);
        let workgroups = Engine::workgroups(d, c) as u32;
        if workgroups == 0 {
            return false;
        }
        // Two-dimensional when one dimension would exceed the device's limit.
        let max = self.gpu.limits().max_compute_workgroups_per_dimension;
        let (x, y) = if workgroups <= max {
            (workgroups, 1)
        } else {
            (max, workgroups.div_ceil(max))
        };
        pass.set_pipeline(&self.pipelines[i]);
        pass.set_bind_group(0, &b.bind_groups[i], &[]);
        pass.dispatch_workgroups(x, y, 1);
        true
    }

    /// Records the chunk's dispatches (and finish for a group's last chunk): one compute pass, or one
    /// pass per dispatch with timestamps while profiling. Returns the dispatches that ran.
    fn encode_chunk(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        uniform: &ChunkUniform,
        last: bool,
    ) -> Vec<usize> {
        let all = 0..self.program.dispatches.len() + usize::from(last);
        let mut used = Vec::new();
        match &self.profiler {
            None => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("chunk"),
                    timestamp_writes: None,
                });
                used.extend(all.filter(|&i| self.record(&mut pass, i, uniform)));
            }
            Some(p) => {
                for i in all {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("profiled"),
                        timestamp_writes: Some(p.writes(i)),
                    });
                    if self.record(&mut pass, i, uniform) {
                        used.push(i);
                    }
                }
                p.resolve(encoder);
            }
        }
        used
    }

    /// While profiling: after a submission, adds its dispatches' times (and rows) to the profile.
    /// (Takes the fields it needs, so that it can run while the buffers are borrowed.)
    fn collect_profile(
        profiler: &mut Option<Profiler>,
        gpu: &Gpu,
        program: &Program,
        used: &[usize],
        uniform: &ChunkUniform,
    ) -> Result<()> {
        let Some(p) = profiler.as_mut() else {
            return Ok(());
        };
        p.collect(&gpu.device, used)?;
        let ds = program
            .dispatches
            .iter()
            .chain([&program.finish])
            .collect::<Vec<_>>();
        for &i in used {
            p.rows[i] += match ds[i].extent {
                Extent::Invocations { of, .. }
                | Extent::Tiles { of, .. }
                | Extent::Workgroups { of } => count(of, uniform) as usize,
            };
        }
        Ok(())
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
                let used = self.encode_chunk(&mut encoder, &uniform, last);
                stats.dispatches += used.len();
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
                    Engine::collect_profile(
                        &mut self.profiler,
                        &self.gpu,
                        &self.program,
                        &used,
                        &uniform,
                    )?;
                    continue;
                }
                if !last {
                    self.gpu.queue.submit([encoder.finish()]);
                    stats.submissions += 1;
                    Engine::collect_profile(
                        &mut self.profiler,
                        &self.gpu,
                        &self.program,
                        &used,
                        &uniform,
                    )?;
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
                Engine::collect_profile(
                    &mut self.profiler,
                    &self.gpu,
                    &self.program,
                    &used,
                    &uniform,
                )?;
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
    /// given `grad_output`, the gradient of the layer's output. Build the engine with `fuse: false`
    /// so that every layer has kernels of its own.
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
        let run = |encoder: &mut wgpu::CommandEncoder, dispatch: Option<usize>| {
            if let Some(i) = dispatch {
                self.record(
                    &mut encoder.begin_compute_pass(&Default::default()),
                    i,
                    &uniform,
                );
            }
        };
        run(&mut encoder, p.forward_of[layer]);
        let result = match grad_output {
            None => &b.activations[p.activation_of[layer + 1]],
            Some(g) => {
                // The forward pass recorded above must run before the queue overwrites the gradient.
                let next = self.gpu.device.create_command_encoder(&Default::default());
                q.submit([std::mem::replace(&mut encoder, next).finish()]);
                q.write_buffer(
                    &b.gradients[p.gradient_of[layer + 1]],
                    0,
                    bytemuck::cast_slice(g),
                );
                run(&mut encoder, p.backward_of[layer]);
                &b.gradients[p.gradient_of[layer]]
            }
        };
        let bytes = 4 * (rows * in_len.max(out_len)) as u64;
        encoder.copy_buffer_to_buffer(result, 0, &b.readback, 0, bytes.min(result.size()));
        self.read_back(encoder, &mut stats)
    }
}

/// The number of items a dispatch's size follows in chunk `c`.
fn count(of: Count, c: &ChunkUniform) -> u64 {
    u64::from(match of {
        Count::Rows => c.rows,
        Count::GradRows => c.grad_rows,
        Count::Spans => c.spans,
        Count::Images => c.images,
    })
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
