//! A program compiled for one device: its pipelines, the model's weights on the device, the buffers its
//! slots name (sized for a number of rows and images), and the bind groups over them. The attribution
//! engine and the trainer are both a `Compiled` plus a loop that feeds it.

use super::context::Gpu;
use super::layout::ChunkUniform;
use super::profile::Profiler;
use super::program::{self, Count, Extent, Program, Sizes, Slot};
use crate::error::{Error, Result};
use crate::model::{Layer, Model, layer_name};
use crate::ops::{self, Params64};
use std::collections::HashMap;
use std::sync::Mutex;
use wgpu::util::DeviceExt;

pub struct Compiled {
    pub gpu: Gpu,
    pub program: Program,
    /// One per dispatch of `program.all()`.
    pipelines: Vec<wgpu::ComputePipeline>,
    /// Weights then bias of each layer that has them (bound as uniform or storage, written by training).
    params: Vec<Option<wgpu::Buffer>>,
    /// Conv weights in Winograd's domain (`Slot::Winograd`), made from `params` on the host in f64; in
    /// training, made again on the GPU after every step (winograd_weights.wgsl).
    winograd: HashMap<Slot, wgpu::Buffer>,
    /// Linear weights in uniform windows (`Slot::Window`, src/gpu/windows.rs), cut on the host once.
    windows: HashMap<Slot, wgpu::Buffer>,
    /// The per-chunk and per-step uniforms.
    uniforms: HashMap<Slot, wgpu::Buffer>,
    buffers: HashMap<Slot, wgpu::Buffer>,
    sizes: Sizes,
    /// One per dispatch of `program.all()`, once the buffers exist.
    bind_groups: Vec<wgpu::BindGroup>,
    /// Variants with fewer rows per lane (`Dispatch::lane_rows`), by dispatch and rows per lane: made
    /// on first use, over the current buffers.
    fitted: Mutex<HashMap<(usize, usize), (wgpu::ComputePipeline, wgpu::BindGroup)>>,
    /// While profiling: timestamps around every dispatch.
    profiler: Option<Profiler>,
}

/// GPU time of one dispatch of a program, summed over the submissions of the profiled runs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    /// e.g. `conv2d_forward (layer 3)`.
    pub label: String,
    pub seconds: f64,
    /// Submissions it ran in.
    pub runs: usize,
    /// Floating-point operations it performed (counted per row from the layer's shapes).
    pub flops: f64,
}

impl Compiled {
    /// Compiles the program's kernels and uploads the model's weights.
    pub fn new(gpu: &Gpu, model: &Model, program: Program) -> Result<Compiled> {
        let device = &gpu.device;
        let binding_limit = gpu.binding_limit();
        let mut params = Vec::new();
        for (i, layer) in model.layers().iter().enumerate() {
            let Some(p) = model.params(i) else {
                params.push(None);
                continue;
            };
            let mut data = p.weight.clone();
            let outputs = layer.param_shapes().map_or(0, |(w, _)| w[0]);
            data.extend(if p.bias.is_empty() {
                vec![0.0; outputs]
            } else {
                p.bias.clone()
            });
            data.resize(program.params_lens[i], 0.0);
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
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::UNIFORM
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                },
            )));
        }
        // Conv weights in Winograd's domain, transformed in f64 once.
        let mut winograd = HashMap::new();
        for slot in program.slots() {
            let Slot::Winograd(i, backward) = slot else {
                continue;
            };
            let (Layer::Conv2d(c), Some(p)) = (model.layers()[i], model.params(i)) else {
                unreachable!("Winograd weights of a layer without conv weights");
            };
            let p = Params64::from(p);
            let sizes = [c.out_channels, c.in_channels];
            let mut data: Vec<f32> = if backward {
                ops::winograd::backward_weights(&p.weight, sizes)
            } else {
                let mut data = ops::winograd::forward_weights(&p.weight, &p.bias, sizes);
                data.extend(ops::winograd::forward_bounds(&p.weight, sizes));
                data
            }
            .into_iter()
            .map(|v| v as f32)
            .collect();
            data.resize(program::winograd_len(&c, backward), 0.0);
            winograd.insert(
                slot,
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("winograd"),
                    contents: bytemuck::cast_slice(&data),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
                }),
            );
        }
        let mut windows = HashMap::new();
        for slot in program.slots() {
            let Slot::Window(i, w) = slot else {
                continue;
            };
            let (Some(cut), Some(p)) = (program.windows[i], model.params(i)) else {
                unreachable!("a window of a layer without windowed weights");
            };
            windows.insert(
                slot,
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("window"),
                    contents: bytemuck::cast_slice(&cut.values(&p.weight, w)),
                    usage: wgpu::BufferUsages::UNIFORM,
                }),
            );
        }
        let pipelines = program
            .all()
            .map(|d| gpu.pipelines.get(device, d.kernel, &d.spec))
            .collect::<Result<Vec<_>>>()?;
        let uniforms = [Slot::Chunk, Slot::Step]
            .into_iter()
            .map(|slot| {
                let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("uniform"),
                    size: size_of::<ChunkUniform>().max(48) as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (slot, buffer)
            })
            .collect();
        Ok(Compiled {
            gpu: gpu.clone(),
            program,
            pipelines,
            params,
            winograd,
            windows,
            uniforms,
            buffers: HashMap::new(),
            sizes: Sizes::default(),
            bind_groups: Vec::new(),
            fitted: Mutex::new(HashMap::new()),
            profiler: None,
        })
    }

    /// Times every dispatch of the following submissions (each gets a compute pass of its own with
    /// timestamps); needs a device with `TIMESTAMP_QUERY`.
    pub fn start_profiling(&mut self) -> Result<()> {
        let gpu = &self.gpu;
        self.profiler = Some(Profiler::new(
            &gpu.device,
            &gpu.queue,
            self.program.all().count(),
        )?);
        Ok(())
    }

    /// GPU time per dispatch since [`Compiled::start_profiling`], which this stops.
    pub fn take_profile(&mut self) -> Option<Vec<KernelTime>> {
        let p = self.profiler.take()?;
        Some(
            self.program
                .all()
                .enumerate()
                .map(|(i, d)| KernelTime {
                    label: d.label.clone(),
                    seconds: p.seconds[i],
                    runs: p.runs[i],
                    flops: d.flops_per_row * p.rows[i] as f64,
                })
                .collect(),
        )
    }

    /// While profiling: after a submission, adds its dispatches' times (and rows) to the profile.
    pub fn collect_profile(&mut self, used: &[usize], c: &ChunkUniform) -> Result<()> {
        let Some(p) = self.profiler.as_mut() else {
            return Ok(());
        };
        p.collect(&self.gpu.device, used)?;
        for (i, d) in self
            .program
            .all()
            .enumerate()
            .filter(|(i, _)| used.contains(i))
        {
            p.rows[i] += match d.extent {
                Extent::Invocations { of, .. }
                | Extent::Tiles { of, .. }
                | Extent::Workgroups { of } => count(of, c) as usize,
                // Fixed grids (the linear weight gradient) loop over the rows inside.
                Extent::Fixed(_) => c.grad_rows as usize,
            };
        }
        Ok(())
    }

    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// The buffer behind `slot` (after [`Compiled::ensure`]).
    pub fn buffer(&self, slot: Slot) -> &wgpu::Buffer {
        match slot {
            Slot::Params(i) => self.params[i].as_ref().expect("layer without weights"),
            Slot::Chunk | Slot::Step => &self.uniforms[&slot],
            Slot::Winograd(..) => &self.winograd[&slot],
            Slot::Window(..) => &self.windows[&slot],
            _ => &self.buffers[&slot],
        }
    }

    /// Makes sure the buffers hold `need`, growing them (and rebuilding the bind groups) if not.
    /// Bytes of all the buffers that `sizes` need.
    fn bytes(&self, sizes: Sizes) -> u64 {
        self.program
            .slots()
            .into_iter()
            .map(|slot| self.program.slot_bytes(slot, sizes))
            .sum()
    }

    pub fn ensure(&mut self, need: Sizes) -> Result<()> {
        let have = self.sizes;
        if !self.bind_groups.is_empty()
            && have.rows >= need.rows
            && have.images >= need.images
            && have.group_rows >= need.group_rows
            && have.slots >= need.slots
        {
            return Ok(());
        }
        // Growing every size to the larger of the two lets alternating runs (attributions, then logits)
        // settle on one set of buffers; but the sizes multiply (images x accumulators), so a run with
        // many accumulators followed by one with many images could ask for far more than either. Then
        // the buffers are made for this run alone.
        let merged = Sizes {
            rows: have.rows.max(need.rows),
            images: have.images.max(need.images),
            group_rows: have.group_rows.max(need.group_rows),
            slots: have.slots.max(need.slots),
        };
        let sizes = if self.bytes(merged) <= self.bytes(have) + self.bytes(need) {
            merged
        } else {
            need
        };
        let device = &self.gpu.device;
        self.bind_groups.clear();
        self.fitted.lock().unwrap().clear();
        self.buffers.clear();
        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        for slot in self.program.slots() {
            if matches!(
                slot,
                Slot::Chunk | Slot::Step | Slot::Params(_) | Slot::Winograd(..) | Slot::Window(..)
            ) {
                continue;
            }
            let bytes = self.program.slot_bytes(slot, sizes);
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("slot"),
                // Bindings need at least one element; 16 bytes covers every element type here.
                size: bytes.max(16).next_multiple_of(4),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            self.buffers.insert(slot, buffer);
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            self.buffers.clear();
            return Err(Error::Gpu(format!(
                "allocating buffers for {} rows and {} images failed ({e}); lower --max-memory",
                sizes.rows, sizes.images
            )));
        }
        self.sizes = sizes;
        self.bind_groups = self
            .program
            .all()
            .zip(&self.pipelines)
            .map(|(d, pipeline)| self.bind_group(d, pipeline))
            .collect();
        Ok(())
    }

    /// Dispatch `d`'s bindings over the current buffers, for `pipeline` (whose layout is its own).
    fn bind_group(
        &self,
        d: &program::Dispatch,
        pipeline: &wgpu::ComputePipeline,
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = d
            .bindings
            .iter()
            .map(|&(binding, slot)| wgpu::BindGroupEntry {
                binding,
                resource: self.buffer(slot).as_entire_binding(),
            })
            .collect();
        self.gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&d.label),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
    }

    /// Rows per lane for dispatch `i` in chunk `c` when fewer than its `lane_rows`: the fewest that
    /// hold the chunk's rows in one workgroup. On a CPU adapter a lane computes all its rows whether
    /// they exist or not: 50 rows in 8 lanes of 8 took 6-9% longer in the 1568 -> 64 layer's kernels
    /// than in 8 lanes of 7 (BENCHMARKS.md, "The second conv along the path, and lavapipe's thread
    /// pool"). Same sums, same bits.
    fn fitted_rows(&self, i: usize, c: &ChunkUniform) -> Option<usize> {
        let d = self.program.all().nth(i).unwrap();
        let (
            Some(rb),
            Extent::Tiles {
                rows_per_workgroup,
                of,
                ..
            },
        ) = (d.lane_rows, d.extent)
        else {
            return None;
        };
        let lanes = rows_per_workgroup / rb;
        let n = count(of, c) as usize;
        (n > 0 && n < rows_per_workgroup)
            .then(|| n.div_ceil(lanes))
            .filter(|&r| r < rb)
    }

    /// Writes the per-chunk uniform.
    pub fn write_chunk(&self, chunk: &ChunkUniform) {
        self.gpu
            .queue
            .write_buffer(self.buffer(Slot::Chunk), 0, bytemuck::bytes_of(chunk));
    }

    /// Workgroups dispatch `i` needs for chunk `c`, or its `fitted` variant (`fitted_rows`).
    fn workgroups(&self, i: usize, c: &ChunkUniform, fitted: bool) -> u64 {
        let d = self.program.all().nth(i).unwrap();
        let size = d.spec.get("WORKGROUP_SIZE").unwrap_or(64) as u64;
        match d.extent {
            Extent::Invocations { per, of } => (per as u64 * count(of, c)).div_ceil(size),
            // A fitted variant's workgroup holds every row of the chunk: one per tile.
            Extent::Tiles { tiles, .. } if fitted => tiles as u64,
            Extent::Tiles {
                tiles,
                rows_per_workgroup,
                of,
            } => count(of, c).div_ceil(rows_per_workgroup as u64) * tiles as u64,
            Extent::Workgroups { of } => count(of, c),
            Extent::Fixed(n) => n as u64,
        }
    }

    /// Records dispatch `i` of `program.all()`; returns whether it dispatched anything.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, i: usize, c: &ChunkUniform) -> bool {
        let fitted = self
            .fitted_rows(i, c)
            .and_then(|rows| self.fitted_variant(i, rows));
        let workgroups = self.workgroups(i, c, fitted.is_some()) as u32;
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
        let (pipeline, group) = match &fitted {
            Some((pipeline, group)) => (pipeline, group),
            None => (&self.pipelines[i], &self.bind_groups[i]),
        };
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, group, &[]);
        pass.dispatch_workgroups(x, y, 1);
        true
    }

    /// Dispatch `i` with `rows` rows per lane over the current buffers, compiled on first use; None
    /// if it does not compile (the dispatch then runs as it is).
    fn fitted_variant(
        &self,
        i: usize,
        rows: usize,
    ) -> Option<(wgpu::ComputePipeline, wgpu::BindGroup)> {
        let mut fitted = self.fitted.lock().unwrap();
        if let Some(v) = fitted.get(&(i, rows)) {
            return Some(v.clone());
        }
        let d = self.program.all().nth(i).unwrap();
        let spec = d.spec.clone().with_u32("RB", rows);
        let pipeline = self
            .gpu
            .pipelines
            .get(&self.gpu.device, d.kernel, &spec)
            .ok()?;
        let group = self.bind_group(d, &pipeline);
        fitted.insert((i, rows), (pipeline.clone(), group.clone()));
        Some((pipeline, group))
    }

    /// Records dispatches `indices` in one compute pass, or one pass each with timestamps while
    /// profiling. Returns the dispatches that ran.
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        indices: impl Iterator<Item = usize>,
        c: &ChunkUniform,
    ) -> Vec<usize> {
        let mut used = Vec::new();
        match &self.profiler {
            None => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("chunk"),
                    timestamp_writes: None,
                });
                used.extend(indices.filter(|&i| self.record(&mut pass, i, c)));
            }
            Some(p) => {
                for i in indices {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("profiled"),
                        timestamp_writes: Some(p.writes(i)),
                    });
                    if self.record(&mut pass, i, c) {
                        used.push(i);
                    }
                }
                p.resolve(encoder);
            }
        }
        used
    }
}

/// The number of items a dispatch's size follows in chunk `c`.
pub fn count(of: Count, c: &ChunkUniform) -> u64 {
    u64::from(match of {
        Count::Rows => c.rows,
        Count::GradRows => c.grad_rows,
        Count::Spans => c.spans,
        Count::Images => c.images,
        Count::Ends => 2 * c.images,
        Count::One => 1,
    })
}

/// A mappable buffer that results are copied into and read from.
pub struct Readback {
    buffer: wgpu::Buffer,
}

impl Readback {
    pub fn new(device: &wgpu::Device, bytes: u64) -> Readback {
        Readback {
            buffer: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes.max(16).next_multiple_of(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        }
    }

    pub fn size(&self) -> u64 {
        self.buffer.size()
    }

    /// Appends to `encoder` copies of `sources` (buffer, bytes) one after the other, submits it, waits,
    /// and returns the copied values as f32.
    pub fn read(
        &self,
        gpu: &Gpu,
        mut encoder: wgpu::CommandEncoder,
        sources: &[(&wgpu::Buffer, u64)],
    ) -> Result<Vec<f32>> {
        let mut at = 0;
        for &(buffer, bytes) in sources {
            encoder.copy_buffer_to_buffer(buffer, 0, &self.buffer, at, bytes);
            at += bytes;
        }
        gpu.queue.submit([encoder.finish()]);
        let slice = self.buffer.slice(..at.max(4));
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        gpu.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("the readback was dropped".into()))?
            .map_err(|e| Error::Gpu(format!("reading results back failed: {e}")))?;
        let values = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(e.to_string()))?;
            bytemuck::cast_slice::<u8, f32>(&view)[..(at / 4) as usize].to_vec()
        };
        self.buffer.unmap();
        Ok(values)
    }
}
