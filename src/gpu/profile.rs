//! GPU time per dispatch from timestamp queries, for `gig bench` and the per-kernel benchmarks.
//!
//! While profiling, the engine gives every dispatch a compute pass of its own with timestamps at its
//! start and end (WebGPU's portable form; `TIMESTAMP_QUERY` is the only feature it needs), and reads
//! them back after every submission. Profiled runs are for measuring kernels, not for speed.

use crate::error::{Error, Result};

pub struct Profiler {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
    /// Seconds per dispatch index, summed over every profiled chunk.
    pub seconds: Vec<f64>,
    /// Times each dispatch index ran.
    pub runs: Vec<usize>,
    /// Rows (or spans, images) each dispatch index covered, summed; the engine fills this in.
    pub rows: Vec<usize>,
}

impl Profiler {
    /// Room for `dispatches` dispatches per submission; errors if the device has no timestamp queries.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, dispatches: usize) -> Result<Profiler> {
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(Error::Gpu(
                "the device was opened without TIMESTAMP_QUERY; no GPU timings".into(),
            ));
        }
        let count = 2 * dispatches as u32;
        let bytes = 8 * u64::from(count);
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Ok(Profiler {
            query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count,
            }),
            resolve: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readback: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            period: f64::from(queue.get_timestamp_period()),
            seconds: vec![0.0; dispatches],
            runs: vec![0; dispatches],
            rows: vec![0; dispatches],
        })
    }

    /// Timestamps around dispatch `i`'s pass.
    pub fn writes(&self, i: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.query_set,
            beginning_of_pass_write_index: Some(2 * i as u32),
            end_of_pass_write_index: Some(2 * i as u32 + 1),
        }
    }

    /// Copies the timestamps into the readback buffer (before submission).
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(
            &self.query_set,
            0..2 * self.seconds.len() as u32,
            &self.resolve,
            0,
        );
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, self.resolve.size());
    }

    /// After the submission: adds the durations of the dispatches in `used` (indices) to the totals.
    pub fn collect(&mut self, device: &wgpu::Device, used: &[usize]) -> Result<()> {
        let slice = self.readback.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for timestamps failed: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Gpu("the timestamp readback was dropped".into()))?
            .map_err(|e| Error::Gpu(format!("reading timestamps failed: {e}")))?;
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(e.to_string()))?;
            let ticks: &[u64] = bytemuck::cast_slice(&view);
            for &i in used {
                let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * self.period * 1e-9;
                self.seconds[i] += dt;
                self.runs[i] += 1;
            }
        }
        self.readback.unmap();
        Ok(())
    }
}
