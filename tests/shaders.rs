//! Every kernel, in every specialization the test models lower to, parses and validates with naga.

use gig::Model;
use gig::gpu::{Atlas, Kernel, Limits, Program, Purpose, Tiling};

/// Models whose lowering uses every kernel and every `//#if` flag: fused and unfused ReLUs, masks on
/// conv, linear and avg-pool, max-pool after a ReLU, the fused and the separate seed, strides, padding.
const MODELS: &[(&str, [usize; 3])] = &[
    (
        "conv(1,16,3,p1) relu maxpool2 conv(16,32,3,p1) relu maxpool2 flatten linear(1568,64) relu linear(64,10)",
        [1, 28, 28],
    ),
    (
        "relu conv(3,5,3x2,s2,p1x0,nobias) relu avgpool(3,s2,p1) relu conv(5,4,3) flatten relu",
        [3, 17, 13],
    ),
    (
        "conv(2,3,5,s3,p2) avgpool2 relu relu flatten linear(6,2)",
        [2, 11, 9],
    ),
    // Max-pools applied in the convs' input gradients, whose inputs are ReLU outputs (MASK too), with
    // 2x2 and 3x3 windows.
    (
        "relu conv(2,6,3,p1) relu maxpool2 relu conv(6,8,3,p1) relu maxpool3 flatten linear(32,5)",
        [2, 16, 16],
    ),
    // A 3x3 conv with a ReLU and no pool before another (Winograd weight gradient over the whole
    // plane in training).
    (
        "conv(1,6,3,p1) relu maxpool2 conv(6,8,3,p1) relu conv(8,4,3) relu flatten linear(64,5)",
        [1, 12, 12],
    ),
    // A strided first conv and a max-pool with disjoint windows that leave a row and column out: its
    // input gradient is folded (FOLDED).
    (
        "conv(2,3,3,s2,p1) maxpool2 flatten linear(12,3)",
        [2, 10, 10],
    ),
];

fn validate(kernel: Kernel, source: &str) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{}: {}\n{source}", kernel.name(), e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}: {}\n{source}", kernel.name(), e.emit_to_string(source)));
}

#[test]
fn every_kernel_variant_validates_with_naga() {
    let mut seen = std::collections::HashSet::new();
    // (kernel, flag, with MASK) of the flags in FLAGS.
    let mut flags = std::collections::HashSet::new();
    // (kernel, soft) of the linear kernels seen with their weights in uniform windows.
    let mut windowed = std::collections::HashSet::new();
    for (arch, shape) in MODELS {
        let model = Model::random_from_arch(arch, *shape, 0).unwrap();
        let winograd = Tiling {
            winograd: gig::gpu::Winograd::Everywhere,
            ..Tiling::CPU
        };
        // The checked Winograd forward without its channel loop (short CLI runs compile it).
        let no_channel_loop = Tiling {
            winograd_channel_loop: false,
            ..Tiling::CPU
        };
        for tiling in [Tiling::CPU, Tiling::GPU, winograd, no_channel_loop] {
            for fuse in [true, false] {
                // A small uniform limit exercises the storage form of the weights as well.
                for max_uniform in [65536, 1024] {
                    for purpose in [
                        Purpose::Attribution {
                            soft: false,
                            gradient_norms: false,
                        },
                        Purpose::Attribution {
                            soft: false,
                            gradient_norms: true,
                        },
                        Purpose::Attribution {
                            soft: true,
                            gradient_norms: false,
                        },
                        Purpose::Training { adam: false },
                        Purpose::Training { adam: true },
                    ] {
                        let limits = Limits {
                            uniform_bytes: max_uniform,
                            storage_buffers: 8,
                            uniform_buffers: 12,
                        };
                        let p = Program::new(&model, &tiling, purpose, fuse, limits);
                        for d in p.all() {
                            if d.spec.get("WINDOWS").is_some_and(|w| w > 1) {
                                windowed.insert((d.kernel, d.spec.has_flag("SOFT")));
                            }
                            validate(d.kernel, &d.kernel.source(&d.spec).unwrap());
                            seen.insert(d.kernel);
                            for (_, flag, _) in FLAGS {
                                if d.spec.has_flag(flag) {
                                    flags.insert((d.kernel, flag, d.spec.has_flag("MASK")));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // The colormap runs after programs, never in one: colormap_validates_with_naga checks it.
    let missing: Vec<_> = Kernel::ALL
        .iter()
        .filter(|k| !seen.contains(k) && **k != Kernel::Colormap)
        .collect();
    assert!(
        missing.is_empty(),
        "kernels no test model uses: {missing:?}"
    );
    for kernel in [Kernel::LinearForward, Kernel::LinearBackward] {
        for soft in [false, true] {
            assert!(
                windowed.contains(&(kernel, soft)),
                "no test model lowers {} (SOFT {soft}) with uniform windows",
                kernel.name()
            );
        }
    }
    for (kernel, flag, masks) in FLAGS {
        for &mask in masks {
            assert!(
                flags.contains(&(kernel, flag, mask)),
                "no test model lowers {} with {flag} (MASK {mask})",
                kernel.name()
            );
        }
    }
}

/// Flags of fusions that only some models lower to: the kernel that must be seen with each, without
/// and with the MASK flag.
const FLAGS: [(Kernel, &str, &[bool]); 20] = [
    (Kernel::Conv2dWinogradForward, "CHECKED", &[false]),
    (Kernel::Conv2dWinogradForward, "CHANNEL_LOOP", &[false]),
    (Kernel::Conv2dWinogradWeightGrad, "POOLED", &[false]),
    (Kernel::Conv2dBackward, "POOLED", &[false, true]),
    (Kernel::Conv2dWinogradBackward, "POOLED", &[false, true]),
    (Kernel::Conv2dWeightGrad, "POOLED", &[false]),
    (Kernel::Conv2dForward, "ENDS", &[false]),
    (Kernel::MaxPoolPath, "SOFT", &[false]),
    (Kernel::MaxPoolPath, "SHARES4", &[false]),
    (Kernel::MaxPoolPath, "RELU_INPUT", &[false]),
    (Kernel::MaxPoolPath, "VEC4", &[false]),
    (Kernel::MaxPoolPath, "SLOPE", &[false]),
    (Kernel::MaxPoolPath, "PACKED", &[false]),
    (Kernel::Accumulate, "PACKED", &[false]),
    (Kernel::Diagnostics, "FOLDED", &[false]),
    (Kernel::Diagnostics, "ROW_LANES", &[false]),
    (Kernel::Diagnostics, "VEC4", &[false]),
    (Kernel::Accumulate, "FOLDED", &[false]),
    (Kernel::Finish, "FOLDED", &[false]),
    (Kernel::Finish, "SUM", &[false]),
];

#[test]
fn colormap_validates_with_naga() {
    // One channel in one cell; three channels in a grid; one-pixel images in many cells.
    for (images, [c, h, w]) in [(1, [1, 28, 28]), (7, [3, 5, 9]), (300, [2, 1, 1])] {
        let atlas = Atlas::new(images, [h, w], 8192).unwrap();
        let k = Kernel::Colormap;
        validate(k, &k.source(&atlas.spec(c)).unwrap());
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
