//! `gig info`: which adapters exist, which one gig picks, and what it allows.

use super::DeviceArgs;
use gig::Result;
use gig::gpu::{Gpu, list_adapters};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    println!("adapters:");
    let adapters = list_adapters(wgpu::Backends::all());
    if adapters.is_empty() {
        println!("  (none)");
    }
    for a in adapters {
        let i = a.get_info();
        println!(
            "  {} | {:?} | {:?} | {} {}",
            i.name, i.backend, i.device_type, i.driver, i.driver_info
        );
    }
    if args.device.is_cpu() {
        println!("chosen: cpu (f64 reference, no adapter)");
        return Ok(());
    }
    let gpu = Gpu::new(&args.device.gpu_options())?;
    let l = gpu.limits();
    println!("chosen: {}", gpu.describe());
    println!("limits:");
    println!(
        "  max_storage_buffer_binding_size: {}",
        l.max_storage_buffer_binding_size
    );
    println!("  max_buffer_size: {}", l.max_buffer_size);
    println!(
        "  max_storage_buffers_per_shader_stage: {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!(
        "  max_compute_workgroups_per_dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroup_storage_size: {}",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  max_uniform_buffer_binding_size: {}",
        l.max_uniform_buffer_binding_size
    );
    println!("features: {:?}", gpu.device.features());
    Ok(())
}
