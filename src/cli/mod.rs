//! Subcommands of the `gig` binary and the options they share.

pub mod attribute;
pub mod bench;
pub mod eval_attr;
pub mod info;
pub mod study;
pub mod train;

use gig::data::{Dataset, MNIST10K_TEST, Split};
use gig::gpu::{DEFAULT_MAX_MEMORY, Engine, EngineOptions, Gpu, GpuOptions, Tiling, Winograd};
use gig::{Backend, CpuBackend, Error, Model, Result};
use std::path::PathBuf;

/// Where to run: `--backend` and `--adapter` (falling back to WGPU_BACKEND and WGPU_ADAPTER_NAME).
#[derive(clap::Args, Clone, Debug)]
pub struct DeviceArgs {
    /// vulkan, metal, dx12, gl, or cpu (the f64 reference, for checking)
    #[arg(long)]
    pub backend: Option<String>,
    /// Use the adapter whose name contains this (case-insensitive), e.g. llvmpipe or nvidia
    #[arg(long)]
    pub adapter: Option<String>,
    /// Device memory gig may use for one chunk's buffers, e.g. 512M or 2G
    #[arg(long, value_parser = parse_bytes, default_value_t = DEFAULT_MAX_MEMORY)]
    pub max_memory: u64,
    /// 3x3 stride-1 convs in attribution: auto (on CPU adapters Winograd for input gradients and soft
    /// cells, direct for the forward pass of points), winograd (that too: faster, but near-ties of
    /// ReLUs and max-pools may fall differently than in PyTorch), or direct
    #[arg(long, default_value = "auto", value_parser = ["auto", "direct", "winograd"])]
    pub conv: String,
    /// Compute |dF/dx| at every gradient point (path diagnostics; --path-plot turns it on). Without
    /// it the GPU takes a first conv's input gradient once per image instead of once per point
    #[arg(long)]
    pub gradient_norms: bool,
}

/// Below this many path points a command compiles the channel-block form of a forward Winograd conv
/// with a max-pool instead of the channel loop (`Tiling::winograd_channel_loop`; the same results bit
/// for bit). On lavapipe the loop's kernel for the shipped model's 16 -> 32 conv takes about 3 s to
/// compile instead of under 1 s, and saves 10-20 us per point (BENCHMARKS.md, "Compile time or run
/// time"): `gig attribute` of a few images would wait for it, `gig bench` and long runs gain.
pub const CHANNEL_LOOP_ROWS: usize = 100_000;

impl DeviceArgs {
    pub fn is_cpu(&self) -> bool {
        self.backend.as_deref() == Some("cpu")
    }

    pub fn gpu_options(&self) -> GpuOptions {
        GpuOptions {
            backend: self.backend.clone(),
            adapter: self.adapter.clone(),
        }
    }

    /// The GPU engine, or the CPU reference for `--backend cpu`, for a command that evaluates about
    /// `rows` path points (images x steps).
    pub fn backend(&self, model: &Model, rows: usize) -> Result<Box<dyn Backend>> {
        if self.is_cpu() {
            return Ok(Box::new(CpuBackend::new(model)));
        }
        let gpu = Gpu::new(&self.gpu_options())?;
        Ok(Box::new(Engine::new(
            &gpu,
            model,
            self.engine_options(&gpu, Some(rows)),
        )?))
    }

    /// `--max-memory`, `--conv` and `--gradient-norms` for an engine on `gpu` that evaluates about
    /// `rows` path points (`None`: as many as a benchmark runs).
    pub fn engine_options(&self, gpu: &Gpu, rows: Option<usize>) -> EngineOptions {
        let winograd = match self.conv.as_str() {
            "direct" => Some(Winograd::Never),
            "winograd" => Some(Winograd::Everywhere),
            _ => None,
        };
        let adapter = Tiling::for_adapter(&gpu.info);
        let few = rows.is_some_and(|r| r < CHANNEL_LOOP_ROWS);
        let tiling = (winograd.is_some() || few).then(|| Tiling {
            winograd: winograd.unwrap_or(adapter.winograd),
            winograd_channel_loop: adapter.winograd_channel_loop && !few,
            ..adapter
        });
        EngineOptions {
            max_memory: self.max_memory,
            tiling,
            gradient_norms: self.gradient_norms,
            ..EngineOptions::default()
        }
    }
}

/// Which data set, and which part of it: `--data`, `--split`, `--test-size`.
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// Data set: a folder with IDX files (MNIST layout) or with one folder of PNGs per class
    #[arg(long)]
    pub data: PathBuf,
    /// test (the last --test-size images), train (the others) or all
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Images held out at the end of the data set: the test split
    #[arg(long, default_value_t = MNIST10K_TEST)]
    pub test_size: usize,
}

impl DataArgs {
    /// The chosen split of the data set.
    pub fn load(&self) -> Result<Dataset> {
        Dataset::load(&self.data)?.split(self.split, self.test_size)
    }
}

/// `1048576`, `512K`, `512M`, `2G` (binary units).
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("`{text}`: unknown unit (use K, M or G)")),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size"))?;
    n.checked_shl(shift)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("`{text}` is not a usable size"))
}

/// Loads the model named on the command line.
pub fn load_model(path: &std::path::Path) -> Result<Model> {
    if !path.exists() {
        return Err(Error::Input(format!(
            "model file {} does not exist",
            path.display()
        )));
    }
    Model::load(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(super::parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(super::parse_bytes("4096"), Ok(4096));
        assert!(super::parse_bytes("0").is_err());
        assert!(super::parse_bytes("3T").is_err());
    }

    #[test]
    fn short_runs_compile_the_channel_blocks() {
        use super::*;
        let args = |conv: &str| DeviceArgs {
            backend: None,
            adapter: None,
            max_memory: DEFAULT_MAX_MEMORY,
            conv: conv.into(),
            gradient_norms: false,
        };
        let gpu = Gpu::new(&GpuOptions::default()).unwrap();
        let adapter = Tiling::for_adapter(&gpu.info);
        let channel_loop = |o: EngineOptions| o.tiling.unwrap_or(adapter).winograd_channel_loop;
        // A benchmark and a long run take the adapter's choice; a short run never the loop.
        assert_eq!(
            channel_loop(args("auto").engine_options(&gpu, None)),
            adapter.winograd_channel_loop
        );
        assert_eq!(
            channel_loop(args("auto").engine_options(&gpu, Some(CHANNEL_LOOP_ROWS))),
            adapter.winograd_channel_loop
        );
        assert!(!channel_loop(args("auto").engine_options(&gpu, Some(640))));
        // --conv still applies to short runs.
        let short = args("direct")
            .engine_options(&gpu, Some(640))
            .tiling
            .unwrap();
        assert_eq!(short.winograd, Winograd::Never);
        assert!(!short.winograd_channel_loop);
    }
}
