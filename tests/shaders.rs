//! Every kernel's WGSL (with shaders/common.wgsl) parses and validates with naga.

use gig::gpu::Kernel;

#[test]
fn every_kernel_validates_with_naga() {
    for kernel in Kernel::ALL {
        let source = kernel.source();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", kernel.name(), e.emit_to_string(&source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", kernel.name(), e.emit_to_string(&source)));
    }
}

#[test]
fn every_shader_file_is_a_kernel() {
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f != "common.wgsl")
        .collect();
    files.sort();
    let mut kernels: Vec<String> = Kernel::ALL
        .iter()
        .map(|k| format!("{}.wgsl", k.name()))
        .collect();
    kernels.sort();
    assert_eq!(files, kernels);
}
