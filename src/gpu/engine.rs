//! The GPU attribution engine: runs a model's attribution [`Program`] chunk by chunk. Each chunk is one
//! compute pass and one submission covering all of its rows (images x path points); each group of
//! images ends with one readback of attributions and diagnostics (or, with `evaluate_on_device`, none).

use super::compiled::{Compiled, KernelTime, Readback};
use super::context::Gpu;
use super::layout::{ChunkUniform, RowEntry, SpanEntry};
use super::program::{Count, Extent, Limits, Program, Purpose, Sizes, Slot, Tiling};
use crate::backend::{
    Backend, Batch, Evaluation, RoundDriver, RoundOptions, RunStats, check_finite, check_plans,
    check_slots,
};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::schedule::{Capacity, Chunk, PathPlan, Point, Schedule};
use std::ops::Range;

/// Receives a group's attributions where they lie, instead of a readback: records its own passes into
/// the group's last encoder, after the finish dispatch. Arguments: the encoder, the attribution buffer
/// (the group's images one after the other, `dim` f32 each, from offset 0) and the group's images within
/// the batch. The buffer is overwritten by the next group, so the sink must use it in this encoder.
pub type GroupSink<'a> =
    dyn FnMut(&mut wgpu::CommandEncoder, &wgpu::Buffer, Range<usize>) -> Result<()> + 'a;

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
    /// Fuse ReLUs, pooling and the seed into neighbouring kernels (see `program.rs`); off runs every
    /// layer alone.
    pub fuse: bool,
    /// Compute |dF/dx| (and the gradient's fingerprint) at every gradient point. Off, a model that
    /// starts with a conv and a max-pool with disjoint windows has that conv's input gradient taken
    /// once per image instead of once per point (program.rs; BENCHMARKS.md has what it saves), and
    /// the norms of its points are NaN. Other models, and soft cells, have them either way.
    pub gradient_norms: bool,
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
            gradient_norms: false,
        }
    }
}

/// One round of evaluation for a group of images.
struct Round<'a> {
    batch: &'a Batch,
    /// The group's images within the batch.
    group: Range<usize>,
    /// One plan per image of the group.
    plans: &'a [PathPlan],
    slots: usize,
    idg: bool,
    /// First round of the group: write its images and clear its accumulators.
    fresh: bool,
    /// The weight of each accumulator, when the round ends with the attributions.
    finish: Option<&'a [Vec<f64>]>,
}

/// The GPU implementation of [`Backend`].
pub struct Engine {
    /// The attribution program with point gradients, and (built on first use) the soft one whose rows
    /// stand for cells of the path.
    programs: [Option<Compiled>; 2],
    /// Which of `programs` runs now.
    active: usize,
    gpu: Gpu,
    model: Model,
    options: EngineOptions,
    tiling: Tiling,
    readback: Option<Readback>,
    /// The uniform of the last chunk that ran, for [`Engine::rerun_dispatch`].
    last_chunk: Option<ChunkUniform>,
    /// Which accumulators (image x slot) of the current group a row has added to: the first row
    /// of each starts it from zero instead of reading it (`Row.fresh`). Adaptive runs keep an
    /// accumulator per cell, so most rows are first.
    added: Vec<bool>,
}

/// True for dispatches whose work is per row (forward or backward): what one evaluation costs.
fn per_row(extent: &Extent) -> bool {
    matches!(
        extent,
        Extent::Tiles {
            of: Count::Rows | Count::GradRows,
            ..
        } | Extent::Invocations {
            of: Count::Rows | Count::GradRows,
            ..
        }
    )
}

impl Engine {
    /// Uploads the model's weights and compiles its kernels on `gpu`'s device.
    pub fn new(gpu: &Gpu, model: &Model, options: EngineOptions) -> Result<Engine> {
        let limits = gpu.limits();
        if limits.max_storage_buffers_per_shader_stage < 4 {
            return Err(Error::Gpu(format!(
                "the device allows {} storage buffers per shader stage; gig's kernels need 4",
                limits.max_storage_buffers_per_shader_stage
            )));
        }
        let tiling = options
            .tiling
            .unwrap_or_else(|| Tiling::for_adapter(&gpu.info));
        let mut engine = Engine {
            programs: [None, None],
            active: 0,
            gpu: gpu.clone(),
            model: model.clone(),
            options,
            tiling,
            readback: None,
            last_chunk: None,
            added: Vec::new(),
        };
        engine.activate(false)?;
        Ok(engine)
    }

    /// Makes the point (`soft` false) or the soft program the one that runs, compiling it on first use.
    fn activate(&mut self, soft: bool) -> Result<()> {
        let k = usize::from(soft);
        if self.programs[k].is_none() {
            let purpose = Purpose::Attribution {
                soft,
                gradient_norms: self.options.gradient_norms,
            };
            let tiling = if soft {
                Tiling {
                    workgroup: self.tiling.soft_workgroup,
                    pooled_backward_channels: self.tiling.soft_pooled_backward_channels,
                    ..self.tiling
                }
            } else {
                self.tiling
            };
            let program = Program::new(
                &self.model,
                &tiling,
                purpose,
                self.options.fuse,
                Limits::of(&self.gpu.limits()),
            );
            self.programs[k] = Some(Compiled::new(&self.gpu, &self.model, program)?);
        }
        if self.active != k {
            self.last_chunk = None;
        }
        self.active = k;
        Ok(())
    }

    fn compiled(&self) -> &Compiled {
        self.programs[self.active].as_ref().unwrap()
    }

    fn compiled_mut(&mut self) -> &mut Compiled {
        self.programs[self.active].as_mut().unwrap()
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn program(&self) -> &Program {
        &self.compiled().program
    }

    /// Dispatches per chunk with gradient rows (the finish dispatch of a group's last chunk not counted).
    pub fn dispatches_per_chunk(&self) -> usize {
        let d = &self.program().dispatches;
        d.iter().filter(|d| !d.per_group()).count()
    }

    /// What each dispatch of a chunk is, in order (then `finish`).
    pub fn dispatch_labels(&self) -> Vec<String> {
        self.program().all().map(|d| d.label.clone()).collect()
    }

    /// Runs dispatch `i` (of [`Engine::dispatch_labels`]) again, alone, as the last chunk of the last
    /// evaluation ran it, over the buffers as that evaluation left them, and waits for it: one
    /// kernel's time with nothing else in the submission (benches/kernels.rs). What it writes is of
    /// no further use; the next evaluation starts afresh.
    pub fn rerun_dispatch(&mut self, i: usize) -> Result<()> {
        let Some(uniform) = self.last_chunk else {
            return Err(Error::Input(
                "rerun_dispatch needs an evaluation to have run first".into(),
            ));
        };
        let count = self.program().all().count();
        if i >= count {
            return Err(Error::Input(format!(
                "dispatch {i} does not exist: the program has {count}"
            )));
        }
        let c = self.compiled();
        c.write_chunk(&uniform);
        let mut encoder = c.gpu.device.create_command_encoder(&Default::default());
        c.encode(&mut encoder, std::iter::once(i), &uniform);
        c.gpu.queue.submit([encoder.finish()]);
        c.gpu.wait()
    }

    /// Floating-point operations of one gradient evaluation: every dispatch's work for one row forward
    /// and backward (a multiply-add counts two).
    pub fn flops_per_evaluation(&self) -> f64 {
        self.program()
            .dispatches
            .iter()
            .filter(|d| per_row(&d.extent))
            .map(|d| d.flops_per_row)
            .sum()
    }

    /// Bytes of activations and gradients one gradient evaluation reads and writes (see `Dispatch`).
    pub fn bytes_per_evaluation(&self) -> f64 {
        self.program()
            .dispatches
            .iter()
            .filter(|d| per_row(&d.extent))
            .map(|d| d.bytes_per_row)
            .sum()
    }

    /// Times every dispatch of the following runs (each gets a compute pass of its own with
    /// timestamps); needs a device with `TIMESTAMP_QUERY`.
    pub fn start_profiling(&mut self) -> Result<()> {
        self.compiled_mut().start_profiling()
    }

    /// GPU time per dispatch since [`Engine::start_profiling`], which this stops.
    pub fn take_profile(&mut self) -> Option<Vec<KernelTime>> {
        self.compiled_mut().take_profile()
    }

    /// The largest chunk and group the device limits and the memory budget allow, with `slots`
    /// accumulators per image and at most `points` rows per image in a group.
    pub fn capacity(&self, slots: usize, points: usize) -> Result<Capacity> {
        let gpu = &self.gpu;
        let p = self.program();
        let binding = gpu.binding_limit();
        let max_groups = u64::from(gpu.limits().max_compute_workgroups_per_dimension);
        let max_workgroups = max_groups * max_groups;
        let dim = p.dim as u64;
        let (slots, points) = (slots.max(1) as u64, points.max(1) as u64);
        let accumulators = 4 * p.total_len as u64 * slots;
        if accumulators > binding {
            return Err(Error::Gpu(format!(
                "{slots} accumulators of an image take {accumulators} bytes but the device binds at most {binding} bytes"
            )));
        }
        let one_row = Sizes {
            rows: 1,
            ..Sizes::default()
        };
        let per_row: Vec<u64> = p
            .slots()
            .into_iter()
            .map(|s| p.slot_bytes(s, one_row))
            .collect();
        let widest_row = per_row.iter().copied().max().unwrap_or(1).max(1);
        let row_bytes: u64 = per_row.iter().sum::<u64>().max(1);
        // Rows per dispatch are bounded by the widest grid: the most workgroups per row of any dispatch.
        let workgroups_per_row = p
            .dispatches
            .iter()
            .map(|d| match d.extent {
                Extent::Invocations { per, .. } => (per as u64).div_ceil(64),
                Extent::Tiles { tiles, .. } => tiles as u64,
                Extent::Workgroups { .. } | Extent::Fixed(_) => 1,
            })
            .max()
            .unwrap_or(1);
        // Per image: inputs and baselines, accumulators, attributions, readback; its row tables; and
        // a folded first layer's outputs at the path's ends.
        let row_table = size_of::<RowEntry>() as u64 * points;
        let ends = 8 * p.ends_len as u64;
        let image_bytes = 4 * dim * 4 + accumulators + 2 * row_table + ends;
        let images = [
            binding / accumulators,
            binding / row_table,
            binding / ends.max(1),
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

    /// Makes sure the buffers hold `sizes`, and the readback buffer whatever a run copies out.
    fn ensure(&mut self, sizes: Sizes) -> Result<()> {
        self.compiled_mut().ensure(sizes)?;
        let s = self.compiled().sizes();
        let p = self.program();
        let bytes = [
            4 * (s.images * p.dim) as u64 + (size_of::<RowEntry>() * s.group_rows) as u64,
            4 * (s.rows * p.gradient_len) as u64,
            4 * (s.rows * p.activation_lens.iter().copied().max().unwrap_or(0)) as u64,
        ]
        .into_iter()
        .max()
        .unwrap();
        if self.readback.as_ref().is_none_or(|r| r.size() < bytes) {
            self.readback = Some(Readback::new(&self.gpu.device, bytes));
        }
        Ok(())
    }

    fn write_chunk(&self, r: &Round<'_>, chunk: &Chunk, added: &mut [bool]) -> ChunkUniform {
        let rows: Vec<RowEntry> = chunk
            .rows
            .iter()
            .map(|row| {
                let plan = &r.plans[row.image];
                let (alpha, weight, cell, slot) = match row.point {
                    Point::Gradient(k) => {
                        let slot = if r.slots > 1 { plan.slot(k) } else { 0 };
                        (
                            plan.gradient.alphas[k],
                            plan.gradient.weights[k],
                            plan.cell(k),
                            slot,
                        )
                    }
                    Point::Forward(k) => (plan.forward[k], 0.0, 0.0, 0),
                };
                let fresh = match row.point {
                    Point::Gradient(_) => {
                        !std::mem::replace(&mut added[row.image * r.slots + slot], true)
                    }
                    Point::Forward(_) => false,
                };
                RowEntry {
                    image: row.image as u32,
                    logit: r.batch.targets[r.group.start + row.image] as u32,
                    alpha: alpha as f32,
                    weight: weight as f32,
                    cell: cell as f32,
                    slot: slot as u32,
                    fresh: u32::from(fresh),
                    ..RowEntry::default()
                }
            })
            .collect();
        let spans: Vec<SpanEntry> = chunk
            .spans
            .iter()
            .map(|s| SpanEntry {
                image: s.image as u32,
                first_row: s.first_row as u32,
                count: s.count as u32,
                _pad: 0,
            })
            .collect();
        let uniform = ChunkUniform {
            grad_rows: chunk.gradient_rows as u32,
            rows: chunk.rows.len() as u32,
            spans: spans.len() as u32,
            images: r.group.len() as u32,
            slots: r.slots as u32,
            idg: u32::from(r.idg),
            _pad: [0; 2],
        };
        let c = self.compiled();
        c.write_chunk(&uniform);
        c.gpu
            .queue
            .write_buffer(c.buffer(Slot::Rows), 0, bytemuck::cast_slice(&rows));
        if !spans.is_empty() {
            c.gpu
                .queue
                .write_buffer(c.buffer(Slot::Spans), 0, bytemuck::cast_slice(&spans));
        }
        uniform
    }

    /// Writes the accumulators' weights (for the finish dispatch).
    fn write_weights(&self, r: &Round<'_>, weights: &[Vec<f64>]) {
        let flat: Vec<f32> = weights
            .iter()
            .flat_map(|w| (0..r.slots).map(move |s| w.get(s).copied().unwrap_or(0.0) as f32))
            .collect();
        self.gpu.queue.write_buffer(
            self.compiled().buffer(Slot::AccumulatorWeights),
            0,
            bytemuck::cast_slice(&flat),
        );
    }

    /// Runs one round for a group of images, chunk by chunk. Returns the round's diagnostics (images
    /// indexed within the group) and, with `r.finish`, the group's attributions; with `logits`, the
    /// logits of every row instead (one readback per chunk).
    fn run_round(
        &mut self,
        r: &Round<'_>,
        capacity: Capacity,
        stats: &mut RunStats,
        mut logits: Option<&mut Vec<Vec<f32>>>,
        mut sink: Option<&mut GroupSink<'_>>,
    ) -> Result<(Evaluation, Option<Vec<f32>>)> {
        let dim = r.batch.dim;
        let capacity = Capacity {
            images_per_group: r.group.len().max(1),
            ..capacity
        };
        let schedule = Schedule::new(r.plans, capacity);
        let group = &schedule.groups[0];
        let gpu = self.gpu.clone();
        if r.fresh {
            let range = r.group.start * dim..r.group.end * dim;
            let mut both = bytemuck::cast_slice::<f32, u8>(&r.batch.inputs[range.clone()]).to_vec();
            both.extend(bytemuck::cast_slice::<f32, u8>(&r.batch.baselines[range]));
            gpu.queue
                .write_buffer(self.compiled().buffer(Slot::Images), 0, &both);
        }
        if let Some(w) = r.finish {
            self.write_weights(r, w);
        }
        let mut eval = Evaluation::zeros(r.plans, dim);
        let mut attributions = None;
        let classes = self.model.classes();
        let logits_slot = Slot::Activation(*self.program().activation_of.last().unwrap());
        let finish = self.program().dispatches.len();
        let finishers = self.program().finish.len();
        let row_bytes = size_of::<RowEntry>() as u64;
        for (ci, chunk) in group.chunks.iter().enumerate() {
            let last = ci + 1 == group.chunks.len();
            let mut added = std::mem::take(&mut self.added);
            if ci == 0 && r.fresh {
                added = vec![false; r.group.len() * r.slots];
            }
            let uniform = self.write_chunk(r, chunk, &mut added);
            self.added = added;
            self.last_chunk = Some(uniform);
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            if ci == 0 && r.fresh {
                encoder.clear_buffer(self.compiled().buffer(Slot::Total), 0, None);
            }
            let with_finish = last && r.finish.is_some();
            // Work per image of the group (a folded first layer at the path's ends) is done once,
            // when the group's images are written (`get` is None for the finish dispatches).
            let dispatches = &self.program().dispatches;
            let finishing = if with_finish { finishers } else { 0 };
            let indices = (0..finish + finishing).filter(|&i| {
                (ci == 0 && r.fresh) || dispatches.get(i).is_none_or(|d| !d.per_group())
            });
            let used = self.compiled().encode(&mut encoder, indices, &uniform);
            stats.dispatches += used.len();
            stats.chunks += 1;
            stats.gradient_rows += chunk.gradient_rows;
            stats.forward_rows += chunk.rows.len() - chunk.gradient_rows;
            stats.submissions += 1;
            let readback = self.readback.as_ref().unwrap();
            if let Some(all) = logits.as_deref_mut() {
                // Forward-only runs (predictions) read each chunk's logits instead of attributions.
                let bytes = 4 * (chunk.rows.len() * classes) as u64;
                let v = readback.read(
                    &gpu,
                    encoder,
                    &[(self.compiled().buffer(logits_slot), bytes)],
                )?;
                stats.readbacks += 1;
                all.extend(v.chunks(classes).map(<[f32]>::to_vec));
                self.compiled_mut().collect_profile(&used, &uniform)?;
                continue;
            }
            // The diagnostics kernel filled in the chunk's row table: keep it with the group's.
            encoder.copy_buffer_to_buffer(
                self.compiled().buffer(Slot::Rows),
                0,
                self.compiled().buffer(Slot::Diagnostics),
                chunk.first_row as u64 * row_bytes,
                chunk.rows.len() as u64 * row_bytes,
            );
            if with_finish && let Some(sink) = sink.as_deref_mut() {
                // The attributions stay on the device, and so do the diagnostics: nothing is read.
                let buffer = self.compiled().buffer(Slot::Attributions);
                sink(&mut encoder, buffer, r.group.clone())?;
            }
            if !last || sink.is_some() {
                gpu.queue.submit([encoder.finish()]);
                self.compiled_mut().collect_profile(&used, &uniform)?;
                continue;
            }
            let table_bytes = group.rows as u64 * row_bytes;
            let mut sources = vec![(self.compiled().buffer(Slot::Diagnostics), table_bytes)];
            if with_finish {
                sources.push((
                    self.compiled().buffer(Slot::Attributions),
                    4 * (r.group.len() * dim) as u64,
                ));
            }
            let v = readback.read(&gpu, encoder, &sources)?;
            stats.readbacks += 1;
            self.compiled_mut().collect_profile(&used, &uniform)?;
            let (table, rest) = v.split_at(table_bytes as usize / 4);
            let table: &[RowEntry] = bytemuck::cast_slice(table);
            // A folded input gradient leaves |dF/dx| and the fingerprint out (program.rs).
            let folded = self.program().folds_input_gradient;
            for c in &group.chunks {
                for (row, e) in c.rows.iter().zip(&table[c.first_row..]) {
                    let (norm, probe) = if folded {
                        (f32::NAN, f32::NAN)
                    } else {
                        (e.grad_norm, e.probe)
                    };
                    eval.record(row.image, row.point, e.f, norm, e.slope, probe);
                }
            }
            if with_finish {
                attributions = Some(rest.to_vec());
            }
        }
        Ok((eval, attributions))
    }

    /// The attributions of a group from its accumulators (a submission of its own, after rounds).
    fn finish_group(
        &mut self,
        r: &Round<'_>,
        weights: &[Vec<f64>],
        stats: &mut RunStats,
    ) -> Result<Vec<f32>> {
        self.write_weights(r, weights);
        let uniform = ChunkUniform {
            images: r.group.len() as u32,
            slots: r.slots as u32,
            ..ChunkUniform::default()
        };
        self.compiled().write_chunk(&uniform);
        let gpu = self.gpu.clone();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let finish = self.program().dispatches.len();
        let finishers = self.program().finish.len();
        let used = self
            .compiled()
            .encode(&mut encoder, finish..finish + finishers, &uniform);
        stats.dispatches += used.len();
        stats.submissions += 1;
        stats.readbacks += 1;
        let bytes = 4 * (r.group.len() * r.batch.dim) as u64;
        let v = self.readback.as_ref().unwrap().read(
            &gpu,
            encoder,
            &[(self.compiled().buffer(Slot::Attributions), bytes)],
        )?;
        self.compiled_mut().collect_profile(&used, &uniform)?;
        Ok(v)
    }

    fn stats(&self) -> RunStats {
        RunStats {
            backend: "gpu".into(),
            device: self.gpu().describe(),
            ..RunStats::default()
        }
    }

    /// Evaluates `plans` like [`Backend::evaluate`] but reads nothing back: each group's attributions
    /// go to `sink` on the device. Diagnostics (F and the gradient along the path) are not read either,
    /// so only the stats are returned.
    pub fn evaluate_on_device(
        &mut self,
        batch: &Batch,
        plans: &[PathPlan],
        sink: &mut GroupSink<'_>,
    ) -> Result<RunStats> {
        Ok(self.run(batch, plans, None, Some(sink))?.stats)
    }

    /// Evaluates plans in one round per group of images; with `logits`, returns every row's logits;
    /// with `sink`, hands it the attributions on the device instead of reading anything back.
    fn run(
        &mut self,
        batch: &Batch,
        plans: &[PathPlan],
        mut logits: Option<&mut Vec<Vec<f32>>>,
        mut sink: Option<&mut GroupSink<'_>>,
    ) -> Result<Evaluation> {
        check_plans(batch, plans)?;
        // Points that stand for cells need the soft kernels.
        self.activate(plans.iter().any(|p| p.cells.iter().any(|&c| c != 0.0)))?;
        let dim = batch.dim;
        let points = plans
            .iter()
            .map(|p| p.gradient.len() + p.forward.len())
            .max()
            .unwrap_or(1);
        let capacity = self.capacity(1, points)?;
        let scope = self
            .gpu()
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let mut out = Evaluation::zeros(plans, dim);
        out.stats = self.stats();
        let ones = vec![vec![1.0]; capacity.images_per_group];
        for start in (0..batch.len()).step_by(capacity.images_per_group) {
            let group = start..(start + capacity.images_per_group).min(batch.len());
            let round = Round {
                batch,
                group: group.clone(),
                plans: &plans[group.clone()],
                slots: 1,
                idg: false,
                fresh: true,
                finish: if logits.is_some() {
                    None
                } else {
                    Some(&ones[..group.len()])
                },
            };
            let schedule = Schedule::new(
                round.plans,
                Capacity {
                    images_per_group: group.len(),
                    ..capacity
                },
            );
            self.ensure(Sizes {
                rows: schedule.max_chunk_rows(),
                images: group.len(),
                group_rows: schedule.max_group_rows(),
                slots: 1,
            })?;
            out.stats.groups += 1;
            let (eval, attributions) = self.run_round(
                &round,
                capacity,
                &mut out.stats,
                logits.as_deref_mut(),
                sink.as_deref_mut(),
            )?;
            out.merge(group.start, &eval);
            if let Some(a) = attributions {
                for (o, v) in out.attributions[group.start * dim..group.end * dim]
                    .iter_mut()
                    .zip(a)
                {
                    *o = f64::from(v);
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
        self.ensure(Sizes {
            rows,
            images: 1,
            group_rows: rows,
            slots: 1,
        })?;
        let c = self.compiled();
        let p = &c.program;
        let q = &c.gpu.queue;
        let uniform = ChunkUniform {
            grad_rows: rows as u32,
            rows: rows as u32,
            ..Default::default()
        };
        c.write_chunk(&uniform);
        q.write_buffer(
            c.buffer(Slot::Activation(p.activation_of[layer])),
            0,
            bytemuck::cast_slice(input),
        );
        let mut encoder = c.gpu.device.create_command_encoder(&Default::default());
        c.encode(&mut encoder, p.forward_of[layer].into_iter(), &uniform);
        let result = match grad_output {
            None => Slot::Activation(p.activation_of[layer + 1]),
            Some(g) => {
                // The forward pass recorded above must run before the queue overwrites the gradient.
                let next = c.gpu.device.create_command_encoder(&Default::default());
                q.submit([std::mem::replace(&mut encoder, next).finish()]);
                q.write_buffer(
                    c.buffer(Slot::Gradient(p.gradient_of[layer + 1])),
                    0,
                    bytemuck::cast_slice(g),
                );
                c.encode(&mut encoder, p.backward_of[layer].into_iter(), &uniform);
                Slot::Gradient(p.gradient_of[layer])
            }
        };
        let bytes = 4
            * (rows
                * if grad_output.is_some() {
                    in_len
                } else {
                    out_len
                }) as u64;
        self.readback
            .as_ref()
            .unwrap()
            .read(&c.gpu, encoder, &[(c.buffer(result), bytes)])
    }
}

impl Backend for Engine {
    fn model(&self) -> &Model {
        &self.model
    }

    fn evaluate(&mut self, batch: &Batch, plans: &[PathPlan]) -> Result<Evaluation> {
        self.run(batch, plans, None, None)
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
        let plans = vec![PathPlan::forward(vec![1.0]); n];
        let mut logits = Vec::with_capacity(n);
        self.run(&batch, &plans, Some(&mut logits), None)?;
        Ok(logits
            .into_iter()
            .map(|l| l.into_iter().map(f64::from).collect())
            .collect())
    }

    fn device(&self) -> String {
        self.gpu().describe()
    }

    fn rounds(
        &mut self,
        batch: &Batch,
        options: RoundOptions,
        driver: &mut dyn RoundDriver,
    ) -> Result<Evaluation> {
        let dim = batch.dim;
        let (slots, idg) = (options.slots.max(1), options.idg);
        self.activate(options.soft)?;
        let capacity = self.capacity(slots, driver.max_points())?;
        let scope = self
            .gpu()
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let mut out = Evaluation::zeros(&vec![PathPlan::forward(Vec::new()); batch.len()], dim);
        out.stats = self.stats();
        for start in (0..batch.len()).step_by(capacity.images_per_group) {
            let group = start..(start + capacity.images_per_group).min(batch.len());
            // Sized once for the whole group: the accumulators must survive every round.
            self.ensure(Sizes {
                rows: capacity.rows_per_chunk,
                images: group.len(),
                group_rows: group.len() * driver.max_points(),
                slots,
            })?;
            out.stats.groups += 1;
            let mut last: Option<Evaluation> = None;
            // The attributions, when the driver knew the last round's weights beforehand.
            let mut finished: Option<Vec<f32>> = None;
            while let Some(plans) = driver.next(group.clone(), last.as_ref())? {
                if finished.is_some() {
                    return Err(Error::Input(
                        "the round driver planned a round after the one it said was the last"
                            .into(),
                    ));
                }
                let sub = Batch {
                    inputs: batch.inputs[group.start * dim..group.end * dim].to_vec(),
                    baselines: batch.baselines[group.start * dim..group.end * dim].to_vec(),
                    targets: batch.targets[group.clone()].to_vec(),
                    dim,
                };
                check_plans(&sub, &plans)?;
                // A group's first round writes its images, clears its accumulators and computes what
                // is per image; a round without points would skip all three.
                if last.is_none()
                    && plans
                        .iter()
                        .all(|p| p.gradient.is_empty() && p.forward.is_empty())
                {
                    return Err(Error::Input(
                        "the first round of a group must evaluate at least one point".into(),
                    ));
                }
                if !options.soft && plans.iter().any(|p| p.cells.iter().any(|&c| c != 0.0)) {
                    return Err(Error::Input(
                        "points stand for cells but the rounds are not soft".into(),
                    ));
                }
                check_slots(&plans, slots)?;
                let weights = driver.final_weights(group.clone());
                let round = Round {
                    batch,
                    group: group.clone(),
                    plans: &plans,
                    slots,
                    idg,
                    fresh: last.is_none(),
                    finish: weights.as_deref(),
                };
                let (eval, attributions) =
                    self.run_round(&round, capacity, &mut out.stats, None, None)?;
                finished = attributions;
                last = Some(eval);
            }
            let attributions = match (finished, &last) {
                (Some(attributions), _) => attributions,
                (None, Some(_)) => {
                    let weights = driver.weights(group.clone());
                    let round = Round {
                        batch,
                        group: group.clone(),
                        plans: &[],
                        slots,
                        idg,
                        fresh: false,
                        finish: None,
                    };
                    self.finish_group(&round, &weights, &mut out.stats)?
                }
                (None, None) => vec![0.0; group.len() * dim],
            };
            for (o, v) in out.attributions[group.start * dim..group.end * dim]
                .iter_mut()
                .zip(attributions)
            {
                *o = f64::from(v);
            }
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("the device rejected a command: {e}")));
        }
        Ok(out)
    }
}
