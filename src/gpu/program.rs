//! Lowering a model to the fixed list of dispatches every chunk (or training step) runs, over named
//! buffers.
//!
//! Fusions: a ReLU after a conv or linear layer runs in that layer's epilogue, and so does a max-pool
//! with disjoint windows after a conv (and its ReLU), whose output is then never stored; backward, the
//! kernels that read that conv's output gradient (input and weight gradients) read it through the
//! pool's choices, so the pool has no pass of its own there either; a ReLU's backward mask is applied by
//! the layer that reads the ReLU's output (conv, linear and avg-pool multiply their input gradient by it;
//! max-pool records no maximum for windows that are all zero); when the model ends in a linear layer,
//! attribution's backward pass starts from the target's row of weights, so no separate seed is needed.
//! ReLUs that cannot be fused run in place. Flatten is free. Soft programs fold a first conv followed by
//! a max-pool: it runs once per image at the path's ends and the pool interpolates between them. Point
//! programs without gradient norms take such a conv's input gradient once per image, after the sum over
//! the path (`Program::folds_input_gradient`).

use super::kernels::{Kernel, Spec};
use super::windows::{self, Windows};
use crate::model::{Layer, Model, Pool2d, Shape};
use crate::ops::winograd;

/// A buffer bound by the program's dispatches, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The per-chunk uniform (`Chunk` in shaders/common.wgsl).
    Chunk,
    /// The per-step optimizer uniform (`Step`).
    Step,
    /// The group's inputs one after the other, then their baselines.
    Images,
    /// The chunk's row table.
    Rows,
    /// The chunk's span table.
    Spans,
    /// The group's running sums of weighted gradients: `Sizes::slots` per image.
    Total,
    /// With a folded first conv: the weighted sum of each image's accumulators, before the conv's
    /// transpose.
    Sum,
    /// The weight of each of the group's accumulators in the attributions.
    AccumulatorWeights,
    /// The group's attributions.
    Attributions,
    /// The filled-in row table of every chunk of the group, one after the other (see `Row`).
    Diagnostics,
    /// Activation buffer i (`Program::activation_lens[i]` values per row).
    Activation(usize),
    /// One of the two gradient buffers the backward pass alternates between.
    Gradient(usize),
    /// Where each max-pool output's maximum was (`Program::argmax_lens[i]` per row).
    Argmax(usize),
    /// Weights then bias of layer i.
    Params(usize),
    /// Conv layer i's weights in Winograd's domain as its Winograd kernel reads them: the forward
    /// transform then the bias (`false`), or the backward transform (`true`). See ops::winograd.
    Winograd(usize, bool),
    /// Linear layer i's weights for one range of inputs, a uniform window (`Program::windows`).
    Window(usize, usize),
    /// Training: each row's label.
    Labels,
    /// Training: each row's loss and whether it was classified right.
    Losses,
    /// Training: each row's share of a conv layer's weight gradient.
    Partial,
    /// Training: the gradient of layer i's weights then bias.
    Grads(usize),
    /// Training: optimizer state k (momentum, or Adam's two moments) of layer i.
    Moment(usize, usize),
    /// Soft attribution: the open share of stored ReLU mask k.
    Mask(usize),
    /// With a folded first conv (points): the derivative along the path of the first max-pool's
    /// outputs, z(x) - z(b) where each window's maximum was (0 where none passes), per row.
    PathSlope,
    /// A folded first layer's outputs at the path's ends: every image's input, then its baseline
    /// (`Program::ends_len` values each).
    Ends,
}

/// What a dispatch's size follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Rows,
    GradRows,
    Spans,
    Images,
    /// Both ends of every image's path: two per image.
    Ends,
    /// Always one: the dispatch's size does not depend on the chunk.
    One,
}

/// How many workgroups a dispatch needs, given the chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    /// `per` invocations per counted item, WORKGROUP_SIZE to a workgroup.
    Invocations { per: usize, of: Count },
    /// `tiles` workgroups per block of `rows_per_workgroup` counted rows.
    Tiles {
        tiles: usize,
        rows_per_workgroup: usize,
        of: Count,
    },
    /// One workgroup per counted item.
    Workgroups { of: Count },
    /// A fixed number of workgroups.
    Fixed(usize),
}

/// One dispatch: a kernel, its specialization and what it binds.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub kernel: Kernel,
    pub spec: Spec,
    pub bindings: Vec<(u32, Slot)>,
    pub extent: Extent,
    /// e.g. `conv2d_forward (layer 3)`.
    pub label: String,
    /// Floating-point operations per counted item (a multiply-add counts two).
    pub flops_per_row: f64,
    /// Bytes of activations, gradients and argmax read and written per counted item (weights and
    /// caches aside): the memory traffic of the roofline.
    pub bytes_per_row: f64,
    /// Rows per lane (the kernel's RB) of a kernel whose lanes each take several rows: a chunk with
    /// fewer rows than a workgroup holds runs a variant with fewer (`Compiled::fitted_rows`), since
    /// every lane computes all RB rows whether they exist or not.
    pub lane_rows: Option<usize>,
}

impl Dispatch {
    /// Work per image of the group, not per chunk: it needs to run only when the group's images
    /// are written.
    pub fn per_group(&self) -> bool {
        matches!(
            self.extent,
            Extent::Tiles {
                of: Count::Ends,
                ..
            } | Extent::Invocations {
                of: Count::Ends,
                ..
            }
        )
    }
}

fn dispatch(
    kernel: Kernel,
    spec: Spec,
    bindings: Vec<(u32, Slot)>,
    extent: Extent,
    label: String,
) -> Dispatch {
    Dispatch {
        kernel,
        spec,
        bindings,
        extent,
        label,
        flops_per_row: 0.0,
        bytes_per_row: 0.0,
        lane_rows: None,
    }
}

/// Register-tile sizes of the layer kernels.
///
/// On a CPU adapter (lavapipe) a workgroup runs as loops over SIMD vectors: per-lane memory reads are
/// gathers and dear, spilled registers are cheap, so tiles are large and reuse every value loaded many
/// times. On a GPU, registers are the limit and parallelism matters, so tiles are small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    /// Rows per workgroup of the conv, pool and element-wise kernels.
    pub workgroup: usize,
    /// The same for the soft kernels. On a CPU adapter every workgroup costs its full width even when
    /// few of its lanes hold rows, and soft rounds are small (adaptive runs a few dozen cells per image
    /// and round): 16 rows made adaptive IG at batch 1 about 25% faster there than 64, and changed
    /// batch 16 by a few percent (BENCHMARKS.md).
    pub soft_workgroup: usize,
    /// Channels per conv tile (output channels forward, input channels backward).
    pub conv_channels: usize,
    /// Neighbouring values per conv tile along a row.
    pub conv_strip: usize,
    /// Neighbouring values per pooling tile.
    pub pool_strip: usize,
    /// Lanes per workgroup of the linear kernels. On lavapipe a weight read from a storage buffer is a
    /// gather even at a uniform address, so each one should serve many rows: 8 lanes of 8 rows made the
    /// 1568 -> 64 layer's kernels 30-35% faster than 16 lanes of 4 (BENCHMARKS.md).
    pub linear_workgroup: usize,
    /// Rows per lane of the linear kernels, points and soft cells alike: a chunk with fewer rows
    /// than a workgroup holds runs with fewer (`fit_lane_rows`).
    pub linear_rows: usize,
    /// Outputs (forward) or inputs (backward) per linear tile.
    pub linear_features: usize,
    /// Attribution reads the weights of a linear layer too large for one uniform binding from several
    /// (src/gpu/windows.rs). On lavapipe a uniform read costs a third of a storage read: the 1568 ->
    /// 64 layer's forward kernel took 0.67-0.82 of its time (mins, batch 1, points and soft cells),
    /// its input gradient 0.87-1.0 (BENCHMARKS.md, "Linear weights in uniform windows").
    pub linear_windows: bool,
    /// Which 3x3 stride-1 convs of attribution run as Winograd's F(2x2, 3x3).
    pub winograd: Winograd,
    /// Channels and 2x2 blocks per Winograd tile; soft forward tiles and input gradients have
    /// channels of their own.
    pub winograd_channels: usize,
    pub winograd_soft_channels: usize,
    pub winograd_strip: usize,
    /// Input channels per tile of the Winograd input gradient. Each tile reads the output gradients
    /// (with a pool, its gradients and choices) under it for every output channel, once per channel
    /// block: on lavapipe, where each such read is a loop over the lanes, all 16 input channels of
    /// the shipped CNN's second conv in one tile made that kernel 19% faster at batch 100 than 8
    /// (and 16% in training, no slower at batch 1; BENCHMARKS.md).
    pub winograd_backward_channels: usize,
    /// Rows per workgroup of the Winograd input gradient, at most (`workgroup` caps it). With one
    /// channel block its tiles are few (7 for the shipped model's second conv), and lavapipe gives
    /// each thread a contiguous range of workgroups: 32 rows split 64-row blocks over both threads,
    /// which made that kernel 13% faster in training and 5-10% at batch 1 (BENCHMARKS.md).
    pub winograd_backward_workgroup: usize,
    /// Whether a Winograd forward with a max-pool computes every output channel of its strip in one
    /// workgroup, looping over them with the sums over input channels unrolled inside (CHANNEL_LOOP
    /// in the kernel). On lavapipe a sum that a loop carries costs about 5 instructions per product;
    /// on a GPU the unrolled inputs (IN_C x 16 values per block) would not fit in registers.
    pub winograd_channel_loop: bool,
    /// Under `Winograd::Safe`, point programs run a conv and the 2x2 max-pool after it by checked
    /// Winograd where the conv has at least this many input channels. With one, the checks cost
    /// more than Winograd saves (on lavapipe the 1 -> 16 conv took 1.1-2.3x as long checked as
    /// direct; the 16 -> 32 conv about 0.7 times as long; BENCHMARKS.md).
    pub checked_winograd_channels: usize,
    /// The backward pass applies a max-pool after a conv in the conv's input-gradient kernel (POOLED)
    /// where the conv has at least this many input channels. Each tile then rereads
    /// the pool's gradients and choices under its halo for every output channel; on a CPU adapter
    /// that paid for a 16-channel conv and cost more than the pool's own pass for a 1-channel one
    /// (BENCHMARKS.md).
    pub pooled_backward_channels: usize,
    /// The same for soft cells, whose pool pass is costlier: it spreads each window's gradient by
    /// four shares and stores them all. On lavapipe applying it in the 1 -> 16 conv's input gradient
    /// took 2.5 ms against 2.3 + 2.3 ms for the two passes (adaptive at batch 1; BENCHMARKS.md).
    pub soft_pooled_backward_channels: usize,
    /// Whether the direct (not Winograd) conv input gradient applies the max-pool too. It reads each
    /// conv output's gradient and choice on its own: on lavapipe the 16 -> 32 conv then took 4.4-4.5 ms
    /// against 3.7 + 0.5 ms with the pool's own pass, so CPU adapters keep the pass.
    pub pooled_direct_backward: bool,
    /// Training: the conv weight-gradient kernel walks the output plane in strips of at most
    /// `weight_grad_strip` columns and as many as keep a strip's products per input row within
    /// `weight_grad_products` (but at least one column). On
    /// lavapipe larger strips ran much slower (their loops no longer unroll, so the register arrays go
    /// to memory). Measured there (BENCHMARKS.md): the 16->32 conv 5.8 ms with 1 column, 4.8 with 2,
    /// 7.4 with 4; the 1->16 conv 1.24, 0.85 with 4, 1.3 with 7.
    pub weight_grad_strip: usize,
    pub weight_grad_products: usize,
    /// Training's linear weight gradient: lanes per workgroup, input features per lane, outputs per
    /// workgroup.
    pub linear_grad: [usize; 3],
    /// Whether the linear kernels run a chunk with fewer rows than a workgroup holds with fewer rows
    /// per lane (`Dispatch::lane_rows`): on a CPU adapter a lane computes all its rows whether they
    /// exist or not (BENCHMARKS.md, "The second conv along the path, and lavapipe's thread pool").
    pub fit_lane_rows: bool,
    /// Attribution's per-row sums (diagnostics.wgsl): 0 for a workgroup per row and a tree reduction
    /// (GPUs), else a lane per row in workgroups of this many lanes. On lavapipe a workgroup barrier
    /// is costly: lanes over rows took about half the tree's time (0.11-0.18 of the Winograd input
    /// gradient's against 0.25-0.29, BENCHMARKS.md).
    pub diagnostics_row_lanes: usize,
}

impl Tiling {
    pub const CPU: Tiling = Tiling {
        workgroup: 64,
        soft_workgroup: 16,
        conv_channels: 16,
        conv_strip: 16,
        pool_strip: 16,
        linear_workgroup: 8,
        linear_rows: 8,
        linear_features: 16,
        linear_windows: true,
        winograd: Winograd::Safe,
        winograd_channels: 8,
        winograd_soft_channels: 16,
        winograd_strip: 7,
        winograd_backward_channels: 16,
        winograd_backward_workgroup: 32,
        winograd_channel_loop: true,
        checked_winograd_channels: 2,
        pooled_backward_channels: 2,
        soft_pooled_backward_channels: 1,
        pooled_direct_backward: false,
        weight_grad_strip: 4,
        weight_grad_products: 576,
        linear_grad: [8, 16, 16],
        diagnostics_row_lanes: 8,
        fit_lane_rows: true,
    };

    pub const GPU: Tiling = Tiling {
        workgroup: 64,
        soft_workgroup: 64,
        conv_channels: 8,
        conv_strip: 4,
        pool_strip: 4,
        linear_workgroup: 64,
        linear_rows: 1,
        linear_features: 8,
        linear_windows: false,
        winograd: Winograd::Never,
        winograd_channels: 4,
        winograd_soft_channels: 4,
        winograd_strip: 2,
        winograd_backward_channels: 4,
        winograd_backward_workgroup: 64,
        winograd_channel_loop: false,
        checked_winograd_channels: 2,
        pooled_backward_channels: 1,
        soft_pooled_backward_channels: 1,
        pooled_direct_backward: true,
        weight_grad_strip: 2,
        weight_grad_products: 144,
        linear_grad: [64, 4, 8],
        diagnostics_row_lanes: 0,
        fit_lane_rows: false,
    };

    /// The tiling suited to an adapter: [`Tiling::CPU`] for software adapters, else [`Tiling::GPU`].
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Tiling {
        if info.device_type == wgpu::DeviceType::Cpu {
            Tiling::CPU
        } else {
            Tiling::GPU
        }
    }
}

/// Where attribution computes 3x3 stride-1 convs by Winograd's F(2x2, 3x3) (ops::winograd), given
/// that the 2x2 blocks fit. Training, which has no decisions to keep in step with PyTorch, uses it for
/// the forward pass and input gradients under `Safe` and `Everywhere`, and transforms the weights again
/// after each step; weight gradients stay direct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winograd {
    /// Direct convs everywhere.
    Never,
    /// Input gradients, the soft forward convs, and in point programs a conv with the 2x2 max-pool
    /// after it, checked: the pool's winners are decisions, and Winograd's different rounding could
    /// flip near-ties that the direct kernels decide as PyTorch does (README, Accuracy), so the kernel
    /// sums directly where a rounding bound cannot vouch for its choice (`ops::winograd::
    /// forward_bounds`). Other forward convs of points stay direct. Soft kernels integrate decisions
    /// over their cell, so rounding moves their results only continuously.
    Safe,
    /// The forward pass of points too, unchecked.
    Everywhere,
}

/// What the program computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Integrated Gradients: path points, forward, backward to the input, accumulation, diagnostics.
    /// With `soft`, each row stands for a cell of path points (see `ops::soft`). Without
    /// `gradient_norms` the diagnostics leave out |dF/dx| (and the fingerprint) of each point, which
    /// lets point programs take a first conv's input gradient once per image instead of once per
    /// point (see `Program::folds_input_gradient`).
    Attribution { soft: bool, gradient_norms: bool },
    /// One training step: forward, softmax cross-entropy, backward to every layer's weights, and the
    /// optimizer (with `moments` state buffers per layer: 1 for SGD with momentum, 2 for Adam).
    Training { adam: bool },
}

/// Splits `n` into the fewest parts of at most `max` and returns the part size.
fn part(n: usize, max: usize) -> usize {
    n.div_ceil(n.div_ceil(max.max(1)))
}

/// Lanes per workgroup of a first conv at the path's ends (conv2d_forward.wgsl's ENDS): few, since
/// it has 2 rows per image.
fn ends_lanes(t: &Tiling) -> usize {
    t.workgroup.min(8)
}

/// The channel blocks across an ENDS workgroup's `lanes` (LANE_BLOCKS) and the channels per lane, for
/// a tile of at most `channels` output channels. On a CPU adapter a workgroup costs its full width
/// however few lanes it uses, so the lanes split the tile's channels among 2 rows: at batch 1 the
/// shipped model's took 0.23 ms (points) and 0.20 ms (soft cells) against 0.50 and 0.51 ms with one
/// block (BENCHMARKS.md, "Fuller lanes, fewer stores").
fn ends_blocks(lanes: usize, channels: usize) -> (usize, usize) {
    let mut blocks = (lanes / 2).min(channels).max(1);
    while !lanes.is_multiple_of(blocks) {
        blocks -= 1;
    }
    (blocks, channels.div_ceil(blocks))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// How many rows, images and group rows the buffers of a program hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    pub rows: usize,
    pub images: usize,
    pub group_rows: usize,
    /// Accumulators per image.
    pub slots: usize,
}

/// The model lowered to dispatches.
pub struct Program {
    /// The dispatches of every chunk (attribution) or step (training), in order.
    pub dispatches: Vec<Dispatch>,
    /// Attribution: the last chunk of a group adds these, which make the attributions.
    pub finish: Vec<Dispatch>,
    pub activation_lens: Vec<usize>,
    /// Per max-pool: values per row of its choice buffer (the maximum's position; with `soft`, every
    /// element's share; packed, a byte per output).
    pub argmax_lens: Vec<usize>,
    /// Per max-pool: elements per window.
    pub argmax_windows: Vec<usize>,
    /// Values per row of `Slot::PathSlope` (the first max-pool's outputs; 0 without it).
    pub slope_len: usize,
    /// Per stored soft ReLU mask: values per row.
    pub mask_lens: Vec<usize>,
    /// Soft attribution: tangent rows beside every activation, shares instead of choices.
    pub soft: bool,
    /// Values per row of each gradient buffer.
    pub gradient_len: usize,
    /// Values per row of the training's weight-gradient shares.
    pub partial_len: usize,
    /// Values per image of `Slot::Ends` (0 when the first layer is not folded).
    pub ends_len: usize,
    /// Values of each accumulator (`Slot::Total`): the input's, or with `folds_input_gradient` the
    /// first conv's output's.
    pub total_len: usize,
    /// The first conv's input gradient is taken once per image, after the sum over the path's points:
    /// the accumulators sum the gradient of the conv's output and the finish dispatch applies the
    /// conv's transpose. The diagnostics then have no |dF/dx| per point.
    pub folds_input_gradient: bool,
    /// Values of each layer's weights then bias, as the kernels read them (padded to whole vec4s).
    pub params_lens: Vec<usize>,
    /// Values per image.
    pub dim: usize,
    /// Activation buffer of `shapes[i]` ([`NOT_STORED`] inside a fused conv block).
    pub activation_of: Vec<usize>,
    /// Gradient buffer of `shapes[i]` (where its gradient is materialised).
    pub gradient_of: Vec<usize>,
    /// Dispatches of layer i's forward and backward pass (none for Flatten or a fused layer).
    pub forward_of: Vec<Option<usize>>,
    pub backward_of: Vec<Option<usize>>,
    /// Per layer: a linear layer's weights cut into uniform windows (`Slot::Window`), if they are.
    pub windows: Vec<Option<Windows>>,
}

/// What a program may bind, from the device's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of one uniform binding.
    pub uniform_bytes: u64,
    /// Storage and uniform bindings per kernel.
    pub storage_buffers: u32,
    pub uniform_buffers: u32,
}

impl Limits {
    pub fn of(l: &wgpu::Limits) -> Limits {
        Limits {
            uniform_bytes: l.max_uniform_buffer_binding_size,
            storage_buffers: l.max_storage_buffers_per_shader_stage,
            uniform_buffers: l.max_uniform_buffers_per_shader_stage,
        }
    }
}

/// Storage buffers the diagnostics and accumulate kernels bind when the first conv's input gradient
/// is folded (gradient, logits or spans, row table, the ends or accumulators, the pool's choices).
pub const FOLDED_STORAGE_BUFFERS: u32 = 5;

/// Blocks (output channels x 2x2 blocks) per tile of the checked Winograd forward kernel at most: it
/// notes the blocks whose decisions it must take again in two u32 bit masks (with CHANNEL_LOOP, one
/// channel's blocks in one).
const CHECKED_BLOCKS: usize = 64;

/// A packed max-pool choice where no element passes (`NO_CHOICE` in shaders/common.wgsl).
const NO_CHOICE: usize = 255;

/// `activation_of` of the values inside a fused conv block, which no buffer holds.
pub const NOT_STORED: usize = usize::MAX;

/// Constants every layer kernel is specialized with.
fn layer_spec(workgroup: usize, layer: &Layer, input: Shape, output: Shape) -> Spec {
    let (kernel, stride, padding) = match layer {
        Layer::Conv2d(c) => (c.kernel, c.stride, c.padding),
        Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => (p.kernel, p.stride, p.padding),
        _ => ([1, 1], [1, 1], [0, 0]),
    };
    let [ic, ih, iw] = input.chw();
    let [oc, oh, ow] = output.chw();
    Spec::default()
        .u32("WORKGROUP_SIZE", workgroup)
        .u32("IN_C", ic)
        .u32("IN_H", ih)
        .u32("IN_W", iw)
        .u32("OUT_C", oc)
        .u32("OUT_H", oh)
        .u32("OUT_W", ow)
        .u32("KH", kernel[0])
        .u32("KW", kernel[1])
        .u32("SH", stride[0])
        .u32("SW", stride[1])
        .u32("PH", padding[0])
        .u32("PW", padding[1])
}

fn linear_spec(t: &Tiling, in_len: usize, out_len: usize) -> Spec {
    Spec::default()
        .u32("WORKGROUP_SIZE", t.linear_workgroup)
        .u32("IN_LEN", in_len)
        .u32("OUT_LEN", out_len)
        .u32("RB", t.linear_rows)
}

/// Declares `params` at binding 1, `fn param(i)` and `fn param4(v)` (weights 4 v ..< 4 v + 4): a uniform
/// array when the layer's weights fit one uniform binding (read at uniform addresses, the fast path on
/// every adapter), else a storage array.
pub fn params_decl(spec: Spec, len: usize, max_uniform_bytes: u64) -> Spec {
    weights_decl(spec, 1, "param", len, max_uniform_bytes)
}

/// Declares `len` weights at `binding` as [`params_decl`] does, read by `fn {name}(i)` and
/// `fn {name}4(v)`.
pub fn weights_decl(
    spec: Spec,
    binding: u32,
    name: &str,
    len: usize,
    max_uniform_bytes: u64,
) -> Spec {
    let vec4s = len.div_ceil(4);
    let var = if (vec4s as u64) * 16 <= max_uniform_bytes {
        format!("var<uniform> {name}s: array<vec4<f32>, {vec4s}>")
    } else {
        // Read as vec4s where a kernel can ({name}4): on lavapipe a storage read is a gather per
        // lane even at a uniform address, and a vec4 gather costs little more than a scalar one.
        format!("var<storage, read> {name}s: array<vec4<f32>>")
    };
    spec.decl(format!(
        "@group(0) @binding({binding}) {var};\n\
         fn {name}(i: u32) -> f32 {{ return {name}s[i / 4u][i % 4u]; }}\n\
         fn {name}4(v: u32) -> vec4<f32> {{ return {name}s[v]; }}"
    ))
}

/// Lanes per workgroup of the first max-pool along the path (maxpool_path.wgsl), each 4 outputs
/// where they fit: on lavapipe 64 beat 16 and 32 and matched 128 and 256 (BENCHMARKS.md, "The first
/// conv along the path").
const PATH_POOL_LANES: usize = 64;

/// Specialization and extent of the first max-pool `p` along the path (maxpool_path.wgsl), from a
/// first conv's outputs (`conv`) at the path's ends to the pool's (`pooled`); `relu` if a ReLU is
/// between them.
fn path_pool(
    t: &Tiling,
    p: Pool2d,
    conv: Shape,
    pooled: Shape,
    relu: bool,
    soft: bool,
) -> (Spec, Extent) {
    let window = p.kernel[0] * p.kernel[1];
    let pack = if pooled.len().is_multiple_of(4) { 4 } else { 1 };
    let spec = layer_spec(PATH_POOL_LANES, &Layer::MaxPool2d(p), conv, pooled)
        .u32("ROWS", t.workgroup)
        .u32("WIN", window)
        .flag("RELU_INPUT", relu)
        .flag("VEC4", pack == 4)
        .flag("SOFT", soft)
        .flag("WINDOW", soft)
        .flag("SHARES4", soft && window == 4);
    let extent = Extent::Tiles {
        tiles: pooled.len().div_ceil(PATH_POOL_LANES * pack),
        rows_per_workgroup: t.workgroup,
        of: Count::Rows,
    };
    (spec, extent)
}

/// Values of conv `c`'s Winograd weights as uploaded (padded to whole vec4s): the forward transform
/// then the bias and the checked kernel's rounding bounds (`ops::winograd::forward_bounds`), or the
/// backward transform.
pub fn winograd_len(c: &crate::model::Conv2d, backward: bool) -> usize {
    let u = c.out_channels * c.in_channels * winograd::TILE;
    if backward { u } else { u + 3 * c.out_channels }.next_multiple_of(4)
}

/// Whether a 3x3 stride-1 conv's outputs come in Winograd's 2x2 blocks: the windows of the 2x2 max-pool
/// fused after it (whose kernel is `pool_kernel`), or without one the whole (even) output plane.
fn winograd_blocks(pool_kernel: Option<[usize; 2]>, [oh, ow]: [usize; 2]) -> bool {
    match pool_kernel {
        Some(k) => k == [2, 2],
        None => oh % 2 == 0 && ow % 2 == 0,
    }
}

/// Values of a layer's weights then bias as uploaded: the bias is all the layer's outputs (zeros when it
/// has none) and the whole is padded to vec4s.
pub fn params_len(layer: &Layer) -> usize {
    match layer.param_shapes() {
        Some((w, _)) => (w.iter().product::<usize>() + w[0]).next_multiple_of(4),
        None => 0,
    }
}

impl Program {
    /// Lowers `model` for `purpose`; `fuse` false keeps every layer in its own dispatches (for testing
    /// layers alone).
    pub fn new(
        model: &Model,
        tiling: &Tiling,
        purpose: Purpose,
        fuse: bool,
        limits: Limits,
    ) -> Program {
        use Slot::*;
        let max_uniform_bytes = limits.uniform_bytes;
        let max_storage_buffers = limits.storage_buffers;
        let shapes = model.shapes();
        let layers = model.layers();
        let n = layers.len();
        let dim = shapes[0].len();
        let classes = model.classes();
        let t = tiling;
        let training = matches!(purpose, Purpose::Training { .. });
        let (soft, gradient_norms) = match purpose {
            Purpose::Attribution {
                soft,
                gradient_norms,
            } => (soft, gradient_norms),
            Purpose::Training { .. } => (false, false),
        };
        let elementwise = |len: usize| {
            Spec::default()
                .u32("WORKGROUP_SIZE", t.workgroup)
                .u32("LEN", len)
                .flag("SOFT", soft)
        };
        let params_lens: Vec<usize> = layers.iter().map(params_len).collect();
        let params = |i: usize| params_lens[i];
        // Attribution reads a linear layer's weights from uniform windows where one binding cannot
        // hold them (training's weights change every step and stay in storage). Inputs come in
        // blocks of 32 (forward, linear_forward.wgsl's BLOCK) and tiles of `linear_features`
        // (input gradient); one binding is the chunk's uniform.
        let windows: Vec<Option<Windows>> = layers
            .iter()
            .map(|layer| match layer {
                Layer::Linear(l)
                    if t.linear_windows
                        && !training
                        && l.in_features.is_multiple_of(4)
                        && l.out_features.is_multiple_of(4) =>
                {
                    let ib = part(l.in_features, t.linear_features);
                    let unit = 32 / gcd(32, ib) * ib;
                    Windows::plan(
                        l.in_features,
                        l.out_features,
                        unit,
                        max_uniform_bytes,
                        limits.uniform_buffers.saturating_sub(1),
                    )
                }
                _ => None,
            })
            .collect();
        // A linear kernel's loop over windows of inputs (WINDOWS, KW) and `window4`, which the VEC4
        // forms read their weights with: the uniform windows where `on`, else one window of every
        // input, read by `param4`.
        let windowed = |spec: Spec, i: usize, in_len: usize, on: bool| match windows[i] {
            Some(w) if on => spec
                .u32("WINDOWS", w.count)
                .u32("KW", w.inputs)
                .decl(w.decl()),
            _ => spec
                .u32("WINDOWS", 1)
                .u32("KW", in_len)
                .decl("fn window4(w: u32, v: u32) -> vec4<f32> { return param4(v); }".into()),
        };
        let window_bindings = |i: usize| {
            (0..windows[i].map_or(0, |w| w.count))
                .map(move |w| (windows::FIRST_BINDING + w as u32, Window(i, w)))
        };

        // The layer before i, skipping Flatten (which changes nothing in memory).
        let before = |i: usize| (0..i).rev().find(|&j| layers[j] != Layer::Flatten);
        let after = |i: usize| (i + 1..n).find(|&j| layers[j] != Layer::Flatten);
        // ReLU i feeds a max-pool, which applies it (the pool reads the ReLU's input).
        let absorbed = |i: usize| {
            fuse && layers[i] == Layer::Relu
                && matches!(layers.get(i + 1), Some(Layer::MaxPool2d(_)))
        };
        // The max-pool right after conv i, or after the ReLU after it: its index and window.
        let pool_after = |i: usize| -> Option<(usize, Pool2d)> {
            if !matches!(layers.get(i), Some(Layer::Conv2d(_))) {
                return None;
            }
            let k = if layers.get(i + 1) == Some(&Layer::Relu) {
                i + 2
            } else {
                i + 1
            };
            match layers.get(k) {
                Some(Layer::MaxPool2d(p)) => Some((k, *p)),
                _ => None,
            }
        };
        // A max-pool with disjoint windows right after a conv (and its ReLU) runs in the conv's epilogue,
        // so the conv's output is never stored: the pool layer conv i absorbs, if any.
        // Not in soft kernels: there the epilogue's share computations push the conv's tile out of
        // registers (8x slower on lavapipe); a separate max-pool pass costs much less.
        let pooled_by = |i: usize| -> Option<usize> {
            let (k, p) = pool_after(i).filter(|_| fuse && !soft)?;
            (p.stride == p.kernel && p.padding == [0, 0]).then_some(k)
        };
        // Conv i runs as Winograd's F(2x2, 3x3) (ops::winograd) where its blocks fit; training
        // transforms the weights again after every optimizer step (winograd_weights.wgsl).
        let winograd = |i: usize| {
            t.winograd != self::Winograd::Never
                && matches!(layers[i], Layer::Conv2d(c) if winograd::applies(&c))
        };
        // ReLU i runs in the epilogue of the conv or linear layer before it.
        let relu_fused = |i: usize| {
            fuse && layers[i] == Layer::Relu
                && i > 0
                && matches!(layers[i - 1], Layer::Conv2d(_) | Layer::Linear(_))
                && (!absorbed(i) || pooled_by(i - 1).is_some())
                && after(i).is_some()
        };
        // Layer i reads a ReLU's output and applies its backward mask (a max-pool applies the ReLU).
        let masks_input = |i: usize| {
            fuse && matches!(
                layers[i],
                Layer::Conv2d(_) | Layer::Linear(_) | Layer::AvgPool2d(_) | Layer::MaxPool2d(_)
            ) && before(i).is_some_and(|j| layers[j] == Layer::Relu)
        };
        // Soft attribution stores every ReLU's open shares (unless a max-pool applies it).
        let mask_out = |i: usize| soft && !absorbed(i);
        let mut masks: Vec<Option<usize>> = vec![None; n];
        let mut mask_count = 0;
        for (i, m) in masks.iter_mut().enumerate() {
            if layers[i] == Layer::Relu && mask_out(i) {
                *m = Some(mask_count);
                mask_count += 1;
            }
        }
        let last = (0..n).rev().find(|&j| layers[j] != Layer::Flatten);
        let seed_fused =
            fuse && !training && last.is_some_and(|j| matches!(layers[j], Layer::Linear(_)));

        // Soft programs fold a first conv into the max-pool after it (and the ReLU between): along the
        // straight path its output is z(b) + alpha (z(x) - z(b)), with tangent (z(x) - z(b)) cell / 2,
        // so the conv runs once per image at the path's two ends (ENDS) and the pool reads its input
        // from those (maxpool_path.wgsl); the path points are never made. Point programs do the same
        // where they fold the first conv's input gradient (below). The soft program's pool layer that
        // reads the ends, if any.
        let folded = pool_after(0).filter(|_| soft && fuse).map(|(k, _)| k);
        // Point programs without gradient norms take the first conv's input gradient after the sum
        // over the path: the conv is linear in its input, so sum_k w_k K^T g_k = K^T sum_k w_k g_k
        // for its output gradients g_k. The accumulators sum w_k g_k, read through the max-pool's
        // choices (its windows must be disjoint: each conv output then has one window), and the
        // finish dispatches sum the accumulators and apply K^T once per image. dF/dalpha = g_k . K
        // (x - b) = g_k . (z(x) - z(b)) needs the conv's outputs at the path's ends (bias cancels).
        // The pool after the conv, if the first conv's input gradient is folded so. (Soft cells do
        // not fold: adaptive runs keep an accumulator per cell, and on lavapipe writing each cell's
        // conv-output gradient and summing them cost as much as the conv's input gradient per cell.)
        let folds_input = pooled_by(0).filter(|_| {
            !training && !gradient_norms && max_storage_buffers >= FOLDED_STORAGE_BUFFERS
        });
        let ends_len = if folded.is_some() || folds_input.is_some() {
            shapes[1].len()
        } else {
            0
        };
        // Values per accumulator: the input's, or the first conv's output's when folded.
        let total_len = if folds_input.is_some() {
            shapes[1].len()
        } else {
            dim
        };

        let mut dispatches = Vec::new();
        if !training && folded.is_none() && folds_input.is_none() {
            dispatches.push(dispatch(
                Kernel::Path,
                elementwise(dim),
                vec![(0, Chunk), (1, Images), (3, Rows), (4, Activation(0))],
                Extent::Invocations {
                    per: dim,
                    of: Count::Rows,
                },
                "path".into(),
            ));
        }
        if let (Some(_), Layer::Conv2d(c)) = (folds_input, layers[0]) {
            // The first conv at the path's ends, z(x) and z(b), for its pool at every point
            // (maxpool_path.wgsl) and for dF/dalpha; the path points are never made.
            let [_, oh, ow] = shapes[1].chw();
            let px = part(ow, t.conv_strip);
            let channels = part(c.out_channels, (t.conv_channels * t.conv_strip / px).max(1));
            let lanes = ends_lanes(t);
            let (blocks, ocb) = ends_blocks(lanes, channels);
            let spec = layer_spec(lanes, &layers[0], shapes[0], shapes[1])
                .flag("ENDS", true)
                .u32("OCB", ocb)
                .u32("LANE_BLOCKS", blocks)
                .u32("PX", px);
            dispatches.push(dispatch(
                Kernel::Conv2dForward,
                params_decl(spec, params(0), max_uniform_bytes),
                vec![(0, Chunk), (1, Params(0)), (2, Images), (3, Ends)],
                Extent::Tiles {
                    tiles: c.out_channels.div_ceil(ocb * blocks) * oh * ow.div_ceil(px),
                    rows_per_workgroup: lanes / blocks,
                    of: Count::Ends,
                },
                "conv2d_forward (layer 0, path ends)".into(),
            ));
        }
        let mut activation_lens = vec![dim];
        let mut activation_of = vec![0];
        let mut argmax_lens = Vec::new();
        let mut argmax_windows = Vec::new();
        // With a folded first conv (points): whether its pool's choices are packed, and the pool's
        // outputs per row (`Slot::PathSlope`).
        let mut packed_choices = false;
        let mut slope_len = 0;
        let mut argmax_of = vec![None; n];
        let mut forward_of = vec![None; n];
        // Output buffer of a fused conv block, by the index of its pool layer.
        let mut block_output = vec![None; n];

        for (i, layer) in layers.iter().enumerate() {
            let (input, output) = (shapes[i], shapes[i + 1]);
            let src = activation_of[i];
            if let Some(dst) = block_output[i] {
                activation_of.push(dst);
                continue;
            }
            if matches!(layer, Layer::Flatten) || relu_fused(i) {
                activation_of.push(src);
                continue;
            }
            if *layer == Layer::Relu {
                if absorbed(i) {
                    // The max-pool after it reads this ReLU's input and applies it.
                    activation_of.push(NOT_STORED);
                    continue;
                }
                activation_of.push(src);
                forward_of[i] = Some(dispatches.len());
                let mut bindings = vec![(0, Chunk), (2, Activation(src))];
                bindings.extend(masks[i].map(|m| (4, Mask(m))));
                dispatches.push(dispatch(
                    Kernel::ReluForward,
                    elementwise(input.len()).flag("MASK_OUT", masks[i].is_some()),
                    bindings,
                    Extent::Invocations {
                        per: input.len(),
                        of: Count::Rows,
                    },
                    format!("relu_forward (layer {i})"),
                ));
                continue;
            }
            let pool = pooled_by(i);
            let stored = pool.map_or(output, |k| shapes[k + 1]);
            // The folded first conv, at the path's ends.
            let ends = i == 0 && folded.is_some();
            let dst = activation_lens.len();
            if ends {
                activation_of.push(NOT_STORED);
            } else {
                activation_lens.push(stored.len());
                match pool {
                    Some(k) => {
                        // The conv's and its ReLU's outputs exist only inside the fused kernel.
                        activation_of.push(NOT_STORED);
                        block_output[k] = Some(dst);
                    }
                    None => activation_of.push(dst),
                }
            }
            let lanes = if ends { ends_lanes(t) } else { t.workgroup };
            let spec = layer_spec(lanes, layer, input, output)
                .flag("SOFT", soft && !ends)
                .flag("ENDS", ends);
            let relu = i + 1 < n && relu_fused(i + 1);
            let mask = masks.get(i + 1).copied().flatten().filter(|_| relu);
            let [_, oh, ow] = output.chw();
            // Conv i forward by Winograd where its 2x2 blocks fit (each a pool window when pooled):
            // unchecked in soft programs and training (no decisions to keep, or rounding moves soft
            // results only continuously) and under `Everywhere`; in point programs under `Safe` only
            // with a max-pool, whose winners it checks (CHECKED).
            let pool_kernel = pool.map(|k| match layers[k] {
                Layer::MaxPool2d(p) => p.kernel,
                _ => unreachable!("a conv's fused pool is a max-pool"),
            });
            let blocks_fit = winograd(i) && !ends && winograd_blocks(pool_kernel, [oh, ow]);
            let checked = !(soft || training || t.winograd == self::Winograd::Everywhere);
            let winograd_forward = match layer {
                Layer::Conv2d(c) if blocks_fit => {
                    let gw = pool.map_or(ow / 2, |k| shapes[k + 1].chw()[2]);
                    let px = part(gw, t.winograd_strip);
                    let channels = if soft {
                        t.winograd_soft_channels
                    } else {
                        t.winograd_channels
                    };
                    let ocb = part(c.out_channels, channels);
                    // With a pool and not soft: every output channel in one workgroup, a loop
                    // over them (CHANNEL_LOOP in the kernel).
                    let channel_loop = t.winograd_channel_loop && !soft && pool.is_some();
                    // The checked kernel binds the direct weights too, and notes the unvouched
                    // windows of a tile (of a channel with CHANNEL_LOOP) in 64 bits (32).
                    let storage = 3
                        + usize::from(4 * winograd_len(c, false) as u64 > max_uniform_bytes)
                        + usize::from(4 * params(i) as u64 > max_uniform_bytes);
                    let noted = if channel_loop {
                        px <= CHECKED_BLOCKS / 2
                    } else {
                        ocb * px <= CHECKED_BLOCKS
                    };
                    let fits = pool.is_some()
                        && c.in_channels >= t.checked_winograd_channels
                        && noted
                        && storage <= max_storage_buffers as usize;
                    (!checked || fits).then_some((ocb, px, channel_loop))
                }
                _ => None,
            };
            let (kernel, spec, mut bindings, extent) = match layer {
                // A point program's first conv with its input gradient folded: its pool reads
                // the conv's outputs at the path's ends.
                Layer::Conv2d(_) if i == 0 && folds_input.is_some() => {
                    let k = pool.expect("a folded input gradient's conv is pooled");
                    let Layer::MaxPool2d(pl) = layers[k] else {
                        unreachable!()
                    };
                    let window = pl.kernel[0] * pl.kernel[1];
                    let (spec, extent) = path_pool(t, pl, output, stored, relu, false);
                    // A vec4 lane's choices as bytes in one u32 (accumulate reads them).
                    packed_choices = spec.has_flag("VEC4") && window < NO_CHOICE;
                    argmax_of[k] = Some(argmax_lens.len());
                    argmax_lens.push(if packed_choices {
                        stored.len() / 4
                    } else {
                        stored.len()
                    });
                    argmax_windows.push(window);
                    slope_len = stored.len();
                    let spec = spec.flag("SLOPE", true).flag("PACKED", packed_choices);
                    let bindings = vec![
                        (4, Argmax(argmax_lens.len() - 1)),
                        (5, Rows),
                        (6, PathSlope),
                    ];
                    (Kernel::MaxPoolPath, spec, bindings, extent)
                }
                Layer::Conv2d(c) if winograd_forward.is_some() => {
                    let (ocb, px, channel_loop) = winograd_forward.unwrap();
                    // Blocks of 2x2 conv outputs; with a pool, each block is one pool window.
                    let mut bindings = vec![(1, Winograd(i, false))];
                    if checked {
                        bindings.push((5, Params(i)));
                    }
                    let (spec, [gh, gw]) = match pool {
                        Some(k) => {
                            let [_, ph, pw] = shapes[k + 1].chw();
                            argmax_of[k] = Some(argmax_lens.len());
                            argmax_lens.push(stored.len());
                            argmax_windows.push(4);
                            bindings.push((4, Argmax(argmax_lens.len() - 1)));
                            let spec = spec
                                .flag("POOL", true)
                                .u32("KPH", 2)
                                .u32("KPW", 2)
                                .u32("POOL_H", ph)
                                .u32("POOL_W", pw);
                            (spec, [ph, pw])
                        }
                        None => {
                            bindings.extend(mask.map(|m| (4, Mask(m))));
                            (spec, [oh / 2, ow / 2])
                        }
                    };
                    let channel_blocks = if channel_loop {
                        1
                    } else {
                        c.out_channels.div_ceil(ocb)
                    };
                    let spec = spec
                        .u32("OCB", ocb)
                        .u32("PX", px)
                        .flag("CHANNEL_LOOP", channel_loop)
                        .flag("WINOGRAD", true)
                        .flag("RELU", relu)
                        .flag("MASK_OUT", mask.is_some())
                        .flag("CHECKED", checked);
                    let spec = params_decl(spec, winograd_len(c, false), max_uniform_bytes);
                    let spec = if checked {
                        weights_decl(spec, 5, "direct_param", params(i), max_uniform_bytes)
                    } else {
                        spec
                    };
                    let extent = Extent::Tiles {
                        tiles: channel_blocks * gh * gw.div_ceil(px),
                        rows_per_workgroup: t.workgroup,
                        of: Count::Rows,
                    };
                    (Kernel::Conv2dWinogradForward, spec, bindings, extent)
                }
                Layer::Conv2d(c) => {
                    // Soft kernels carry tangents beside the values: half the tile.
                    let budget = t.conv_channels * t.conv_strip / if soft && !ends { 2 } else { 1 };
                    let (spec, tiles, tile_values, mut bindings) = match pool {
                        Some(k) => {
                            let Layer::MaxPool2d(pl) = layers[k] else {
                                unreachable!()
                            };
                            let [_, ph, pw] = shapes[k + 1].chw();
                            let px = part(pw, (t.conv_strip / pl.kernel[1]).max(1));
                            let window = pl.kernel[0] * pl.kernel[1];
                            argmax_of[k] = Some(argmax_lens.len());
                            argmax_lens.push(stored.len());
                            argmax_windows.push(window);
                            let spec = spec
                                .flag("POOL", true)
                                .u32("KPH", pl.kernel[0])
                                .u32("KPW", pl.kernel[1])
                                .u32("POOL_H", ph)
                                .u32("POOL_W", pw)
                                .u32("PX", px);
                            let bindings = vec![(4, Argmax(argmax_lens.len() - 1))];
                            (spec, ph * pw.div_ceil(px), px * window, bindings)
                        }
                        None => {
                            let px = part(ow, t.conv_strip);
                            (spec.u32("PX", px), oh * ow.div_ceil(px), px, vec![])
                        }
                    };
                    let channels = part(c.out_channels, (budget / tile_values).max(1));
                    let (blocks, ocb) = if ends {
                        ends_blocks(lanes, channels)
                    } else {
                        (1, channels)
                    };
                    let spec = spec.u32("OCB", ocb);
                    let spec = if ends {
                        spec.u32("LANE_BLOCKS", blocks)
                    } else {
                        spec
                    };
                    let spec = params_decl(spec, params(i), max_uniform_bytes);
                    let tiles = tiles * c.out_channels.div_ceil(ocb * blocks);
                    bindings.push((1, Params(i)));
                    bindings.extend(mask.map(|m| (4, Mask(m))));
                    let extent = Extent::Tiles {
                        tiles,
                        rows_per_workgroup: lanes / blocks,
                        of: if ends { Count::Ends } else { Count::Rows },
                    };
                    let spec = spec.flag("RELU", relu).flag("MASK_OUT", mask.is_some());
                    (Kernel::Conv2dForward, spec, bindings, extent)
                }
                Layer::Linear(l) => {
                    let ob = part(l.out_features, t.linear_features);
                    let vec4 = l.in_features.is_multiple_of(4);
                    let spec = linear_spec(t, l.in_features, l.out_features)
                        .u32("OB", ob)
                        .flag("SOFT", soft)
                        .flag("VEC4", vec4);
                    let spec = params_decl(spec, params(i), max_uniform_bytes);
                    let spec = windowed(spec, i, l.in_features, vec4);
                    let extent = Extent::Tiles {
                        tiles: l.out_features.div_ceil(ob),
                        rows_per_workgroup: t.linear_workgroup * t.linear_rows,
                        of: Count::Rows,
                    };
                    // The bias stays in `params`.
                    let mut bindings = vec![(1, Params(i))];
                    if vec4 {
                        bindings.extend(window_bindings(i));
                    }
                    bindings.extend(mask.map(|m| (4, Mask(m))));
                    let spec = spec.flag("RELU", relu).flag("MASK_OUT", mask.is_some());
                    (Kernel::LinearForward, spec, bindings, extent)
                }
                // A soft program's first max-pool, from the first conv at the path's ends.
                Layer::MaxPool2d(p) if folded == Some(i) => {
                    argmax_of[i] = Some(argmax_lens.len());
                    argmax_lens.push(output.len());
                    argmax_windows.push(p.kernel[0] * p.kernel[1]);
                    let (spec, extent) = path_pool(t, *p, input, output, masks_input(i), true);
                    let bindings = vec![(4, Argmax(argmax_lens.len() - 1)), (5, Rows)];
                    (Kernel::MaxPoolPath, spec, bindings, extent)
                }
                Layer::MaxPool2d(p) => {
                    let px = part(ow, t.pool_strip);
                    let tiles = output.chw()[0] * oh * ow.div_ceil(px);
                    let extent = Extent::Tiles {
                        tiles,
                        rows_per_workgroup: t.workgroup,
                        of: Count::Rows,
                    };
                    let window = p.kernel[0] * p.kernel[1];
                    argmax_of[i] = Some(argmax_lens.len());
                    argmax_lens.push(output.len());
                    argmax_windows.push(window);
                    let spec = spec
                        .u32("PX", px)
                        .u32("WIN", window)
                        .flag("WINDOW", soft)
                        .flag("RELU_INPUT", masks_input(i));
                    let bindings = vec![(4, Argmax(argmax_lens.len() - 1))];
                    (Kernel::MaxPoolForward, spec, bindings, extent)
                }
                Layer::AvgPool2d(_) => {
                    let px = part(ow, t.pool_strip);
                    let tiles = output.chw()[0] * oh * ow.div_ceil(px);
                    let extent = Extent::Tiles {
                        tiles,
                        rows_per_workgroup: t.workgroup,
                        of: Count::Rows,
                    };
                    (Kernel::AvgPoolForward, spec.u32("PX", px), vec![], extent)
                }
                Layer::Relu | Layer::Flatten => unreachable!(),
            };
            // A max-pool that applies a ReLU reads the ReLU's input.
            let src = if i > 0 && absorbed(i - 1) {
                activation_of[i - 1]
            } else {
                src
            };
            let (src, dst) = if ends {
                (Images, Ends)
            } else if kernel == Kernel::MaxPoolPath {
                (Ends, Activation(dst))
            } else {
                (Activation(src), Activation(dst))
            };
            bindings.extend([(0, Chunk), (2, src), (3, dst)]);
            forward_of[i] = Some(dispatches.len());
            let label = match pool {
                Some(k) => format!("{} (layers {i}-{k})", kernel.name()),
                None if ends => format!("{} (layer {i}, path ends)", kernel.name()),
                None => format!("{} (layer {i})", kernel.name()),
            };
            dispatches.push(dispatch(kernel, spec, bindings, extent, label));
        }

        // Backward: the gradient flows from the logits towards the input, alternating between two
        // gradient buffers; in-place steps keep it where it is.
        let logits = Activation(activation_of[n]);
        let mut gradient_of = vec![0; n + 1];
        let mut backward_of = vec![None; n];
        if training {
            dispatches.push(dispatch(
                Kernel::Loss,
                Spec::default()
                    .u32("WORKGROUP_SIZE", t.workgroup)
                    .u32("CLASSES", classes),
                vec![
                    (0, Chunk),
                    (2, logits),
                    (3, Labels),
                    (4, Gradient(0)),
                    (5, Losses),
                ],
                Extent::Invocations {
                    per: 1,
                    of: Count::GradRows,
                },
                "loss".into(),
            ));
        } else if !seed_fused {
            dispatches.push(dispatch(
                Kernel::Seed,
                Spec::default()
                    .u32("WORKGROUP_SIZE", t.workgroup)
                    .u32("CLASSES", classes),
                vec![(0, Chunk), (2, Rows), (3, Gradient(0))],
                Extent::Invocations {
                    per: classes,
                    of: Count::GradRows,
                },
                "seed".into(),
            ));
        }
        // The ReLU mask a backward kernel applies: the ReLU's output (hard) or its stored shares (soft).
        let gate = |i: usize| -> Slot {
            let relu = before(i).unwrap();
            match masks[relu] {
                Some(m) => Mask(m),
                None => Activation(activation_of[i]),
            }
        };
        // Conv i's input gradient runs as Winograd's F(2x2, 3x3) when its input is whole 2x2 blocks.
        let winograd_backward =
            |i: usize| winograd(i) && shapes[i].chw()[1..].iter().all(|s| s % 2 == 0);
        // Training needs no gradient below the first layer with weights.
        let first_weights = (0..n).find(|&i| params_lens[i] > 0).unwrap_or(n);
        let has_input_grad = |i: usize| !training || i > first_weights;
        // The backward pass applies a max-pool with disjoint windows after a conv (and its ReLU) in the
        // kernels that read the conv's output gradient (POOLED): its input gradient and, in training,
        // its weight gradient. The pool layer conv i does so for, if any; the conv's output gradient is
        // then never stored. Only where the pool's choices fit the 4 storage buffers per stage that
        // every device allows.
        let pooled_backward = |i: usize| -> Option<(usize, Pool2d)> {
            let Layer::Conv2d(c) = layers[i] else {
                return None;
            };
            let (k, p) = pool_after(i)?;
            let winograd = winograd_backward(i);
            if !fuse
                || (has_input_grad(i) && c.in_channels < t.pooled_backward_channels)
                || (has_input_grad(i) && !winograd && !t.pooled_direct_backward)
                || p.stride != p.kernel
                || p.padding != [0, 0]
                || (winograd && p.kernel != [2, 2])
            {
                return None;
            }
            let weights = if winograd {
                winograd_len(&c, true)
            } else {
                params(i)
            };
            let storage = 3
                + usize::from(masks_input(i))
                + usize::from(4 * weights as u64 > max_uniform_bytes);
            (!has_input_grad(i) || storage <= 4).then_some((k, p))
        };
        // The POOLED specialization and argmax binding of conv i's input-gradient kernel, if it
        // applies a max-pool.
        let pooled_spec = |spec: Spec, i: usize| -> (Spec, Option<(u32, Slot)>) {
            let Some((k, p)) = pooled_backward(i) else {
                return (spec, None);
            };
            let [_, ph, pw] = shapes[k + 1].chw();
            let spec = spec
                .flag("POOLED", true)
                .u32("KPH", p.kernel[0])
                .u32("KPW", p.kernel[1])
                .u32("POOL_H", ph)
                .u32("POOL_W", pw);
            (spec, Some((5, Argmax(argmax_of[k].unwrap()))))
        };
        let backward_label = |kernel: Kernel, i: usize| match pooled_backward(i) {
            Some((k, _)) => format!("{} (layers {i}-{k})", kernel.name()),
            None => format!("{} (layer {i})", kernel.name()),
        };
        let mut partial_len = 0;
        for (i, layer) in layers.iter().enumerate().rev() {
            if training && i < first_weights {
                break;
            }
            if folds_input.is_some_and(|k| i <= k) {
                // Taken after the sum (accumulate and finish).
                gradient_of[i] = gradient_of[i + 1];
                continue;
            }
            let (input, output) = (shapes[i], shapes[i + 1]);
            let out = gradient_of[i + 1];
            let into = 1 - out;
            let mask = masks_input(i) && !matches!(layer, Layer::MaxPool2d(_));
            let x = Activation(activation_of[i]);
            let spec = layer_spec(t.workgroup, layer, input, output).flag("SOFT", soft);
            let [ic, ih, iw] = input.chw();
            if training && params_lens[i] > 0 {
                let pooled =
                    pooled_backward(i).map(|(k, p)| (p, shapes[k + 1], argmax_of[k].unwrap()));
                let (d, share) =
                    weight_grad_dispatches(t, layer, i, input, output, x, Gradient(out), pooled);
                partial_len = partial_len.max(share);
                dispatches.extend(d);
            }
            let input_grad = has_input_grad(i);
            let step = match layer {
                Layer::Flatten => None,
                Layer::Relu => {
                    // Applied by the layer that reads this ReLU's output, where it can.
                    let applied = absorbed(i) || after(i).is_some_and(&masks_input);
                    (!applied).then(|| {
                        let g = match masks[i] {
                            Some(m) => Mask(m),
                            None => Activation(activation_of[i + 1]),
                        };
                        (
                            out,
                            dispatch(
                                Kernel::ReluBackward,
                                elementwise(input.len()),
                                vec![(0, Chunk), (2, g), (3, Gradient(out))],
                                Extent::Invocations {
                                    per: input.len(),
                                    of: Count::GradRows,
                                },
                                format!("relu_backward (layer {i})"),
                            ),
                        )
                    })
                }
                _ if !input_grad => None,
                // Done by the conv before it.
                Layer::MaxPool2d(_)
                    if (0..i).any(|j| pooled_backward(j).is_some_and(|(k, _)| k == i)) =>
                {
                    None
                }
                Layer::Conv2d(c) => {
                    // Winograd's 2x2 blocks or direct strips; either applies the ReLU mask before
                    // the conv and the max-pool after it.
                    let (kernel, weights, spec, tiles, rows) = if winograd_backward(i) {
                        let icb = part(c.in_channels, t.winograd_backward_channels);
                        let px = part(iw / 2, t.winograd_strip);
                        let rows = t.workgroup.min(t.winograd_backward_workgroup);
                        let spec = layer_spec(rows, layer, input, output).flag("SOFT", soft);
                        let spec = spec.u32("ICB", icb).u32("PX", px).flag("WINOGRAD", true);
                        let spec = params_decl(spec, winograd_len(c, true), max_uniform_bytes);
                        let tiles = ic.div_ceil(icb) * (ih / 2) * (iw / 2).div_ceil(px);
                        (
                            Kernel::Conv2dWinogradBackward,
                            Winograd(i, true),
                            spec,
                            tiles,
                            rows,
                        )
                    } else {
                        let icb = part(c.in_channels, t.conv_channels);
                        let sw = c.stride[1];
                        let px = part(iw, t.conv_strip).next_multiple_of(sw);
                        let (pw, kw) = (c.padding[1] as i64, c.kernel[1] as i64);
                        let lo = (pw - (kw - 1)).div_euclid(sw as i64);
                        let hi = (px as i64 - 1 + pw).div_euclid(sw as i64);
                        let spec = spec
                            .u32("ICB", icb)
                            .u32("PX", px)
                            .i32("GX_LO_I", lo)
                            .u32("GSPAN", (hi - lo + 1) as usize);
                        let spec = params_decl(spec, params(i), max_uniform_bytes);
                        let tiles = ic.div_ceil(icb) * ih * iw.div_ceil(px);
                        (Kernel::Conv2dBackward, Params(i), spec, tiles, t.workgroup)
                    };
                    let (spec, pooled) = pooled_spec(spec.flag("MASK", mask), i);
                    let mut bindings = vec![
                        (0, Chunk),
                        (1, weights),
                        (2, Gradient(out)),
                        (3, Gradient(into)),
                    ];
                    if mask {
                        bindings.push((4, gate(i)));
                    }
                    bindings.extend(pooled);
                    let extent = Extent::Tiles {
                        tiles,
                        rows_per_workgroup: rows,
                        of: Count::GradRows,
                    };
                    let label = backward_label(kernel, i);
                    Some((into, dispatch(kernel, spec, bindings, extent, label)))
                }
                Layer::Linear(l) => {
                    let seed = seed_fused && Some(i) == last;
                    let ib = part(l.in_features, t.linear_features);
                    let vec4 = !seed
                        && l.out_features.is_multiple_of(4)
                        && ib.is_multiple_of(4)
                        && l.in_features.is_multiple_of(ib);
                    let spec = linear_spec(t, l.in_features, l.out_features)
                        .u32("IB", ib)
                        .flag("SOFT", soft)
                        .flag("VEC4", vec4);
                    let spec = params_decl(spec, params(i), max_uniform_bytes)
                        .flag("MASK", mask)
                        .flag("SEED", seed);
                    let spec = windowed(spec, i, l.in_features, vec4);
                    let mut bindings = vec![(0, Chunk), (3, Gradient(into))];
                    // With windows the VEC4 form reads no weights from `params`.
                    if vec4 && windows[i].is_some() {
                        bindings.extend(window_bindings(i));
                    } else {
                        bindings.push((1, Params(i)));
                    }
                    bindings.push(if seed { (5, Rows) } else { (2, Gradient(out)) });
                    if mask {
                        bindings.push((4, gate(i)));
                    }
                    let extent = Extent::Tiles {
                        tiles: l.in_features.div_ceil(ib),
                        rows_per_workgroup: t.linear_workgroup * t.linear_rows,
                        of: Count::GradRows,
                    };
                    let label = format!("linear_backward (layer {i})");
                    Some((
                        into,
                        dispatch(Kernel::LinearBackward, spec, bindings, extent, label),
                    ))
                }
                Layer::MaxPool2d(p) => {
                    let [_, oh, ow] = output.chw();
                    let disjoint = p.stride == p.kernel
                        && p.padding == [0, 0]
                        && ih == oh * p.kernel[0]
                        && iw == ow * p.kernel[1];
                    // Disjoint windows write their own inputs; otherwise each input gathers its windows.
                    let (tiles, px) = if disjoint {
                        let px = part(ow, t.pool_strip);
                        (ic * oh * ow.div_ceil(px), px)
                    } else {
                        let px = part(iw, t.pool_strip);
                        (ic * ih * iw.div_ceil(px), px)
                    };
                    let spec = spec
                        .u32("PX", px)
                        .u32("WIN", p.kernel[0] * p.kernel[1])
                        .flag("DISJOINT", disjoint);
                    let a = Argmax(argmax_of[i].unwrap());
                    let bindings =
                        vec![(0, Chunk), (2, Gradient(out)), (3, a), (4, Gradient(into))];
                    let extent = Extent::Tiles {
                        tiles,
                        rows_per_workgroup: t.workgroup,
                        of: Count::GradRows,
                    };
                    let label = format!("maxpool_backward (layer {i})");
                    Some((
                        into,
                        dispatch(Kernel::MaxPoolBackward, spec, bindings, extent, label),
                    ))
                }
                Layer::AvgPool2d(_) => {
                    let px = part(iw, t.pool_strip);
                    let spec = spec.u32("PX", px).flag("MASK", mask);
                    let mut bindings = vec![(0, Chunk), (2, Gradient(out)), (3, Gradient(into))];
                    if mask {
                        bindings.push((4, gate(i)));
                    }
                    let tiles = ic * ih * iw.div_ceil(px);
                    let extent = Extent::Tiles {
                        tiles,
                        rows_per_workgroup: t.workgroup,
                        of: Count::GradRows,
                    };
                    let label = format!("avgpool_backward (layer {i})");
                    Some((
                        into,
                        dispatch(Kernel::AvgPoolBackward, spec, bindings, extent, label),
                    ))
                }
            };
            match step {
                None => gradient_of[i] = out,
                Some((into, d)) => {
                    gradient_of[i] = into;
                    backward_of[i] = Some(dispatches.len());
                    dispatches.push(d);
                }
            }
        }

        let mut finish = Vec::new();
        match purpose {
            Purpose::Attribution { .. } => {
                // Diagnostics first: IDG's accumulation weighs each row by the dF/dalpha they compute.
                // With a folded input gradient they read the first max-pool's output gradient and
                // choices instead of the input gradient (the diagnostics its slopes along the path).
                let (len, folded_pool) = match folds_input {
                    Some(k) => (shapes[k + 1].len(), Some(Argmax(argmax_of[k].unwrap()))),
                    None => (dim, None),
                };
                let gradient = Gradient(gradient_of[folds_input.map_or(0, |k| k + 1)]);
                // With a folded input gradient an accumulate invocation sums `pool_px` windows of a
                // pooled row.
                let pool_px = |pw: usize| part(pw, t.pool_strip);
                let folded_spec = |spec: Spec| match folds_input {
                    Some(k) => {
                        let Layer::MaxPool2d(p) = layers[k] else {
                            unreachable!()
                        };
                        let ([_, ch, cw], [_, ph, pw]) = (shapes[1].chw(), shapes[k + 1].chw());
                        spec.flag("FOLDED", true)
                            .flag("PACKED", packed_choices)
                            .u32("PX", pool_px(pw))
                            .u32("ACC_LEN", total_len)
                            .u32("CONV_H", ch)
                            .u32("CONV_W", cw)
                            .u32("KPH", p.kernel[0])
                            .u32("KPW", p.kernel[1])
                            .u32("POOL_H", ph)
                            .u32("POOL_W", pw)
                    }
                    None => spec,
                };
                let mut bindings = vec![(0, Chunk), (2, gradient), (3, logits), (4, Rows)];
                bindings.push((
                    5,
                    if folded_pool.is_some() {
                        PathSlope
                    } else {
                        Images
                    },
                ));
                let (spec, extent) = match t.diagnostics_row_lanes {
                    0 => (elementwise(len), Extent::Workgroups { of: Count::Rows }),
                    lanes => (
                        Spec::default()
                            .u32("WORKGROUP_SIZE", lanes)
                            .u32("LEN", len)
                            .flag("ROW_LANES", true)
                            .flag("VEC4", folds_input.is_some() && len.is_multiple_of(4)),
                        Extent::Invocations {
                            per: 1,
                            of: Count::Rows,
                        },
                    ),
                };
                dispatches.push(dispatch(
                    Kernel::Diagnostics,
                    folded_spec(spec.u32("CLASSES", classes)),
                    bindings,
                    extent,
                    "diagnostics".into(),
                ));
                let mut bindings =
                    vec![(0, Chunk), (2, gradient), (3, Rows), (4, Spans), (5, Total)];
                bindings.extend(folded_pool.map(|a| (6, a)));
                let per = match folds_input {
                    Some(k) => {
                        let [_, _, pw] = shapes[k + 1].chw();
                        len / pw * pw.div_ceil(pool_px(pw))
                    }
                    None => len,
                };
                dispatches.push(dispatch(
                    Kernel::Accumulate,
                    folded_spec(elementwise(len)),
                    bindings,
                    Extent::Invocations {
                        per,
                        of: Count::Spans,
                    },
                    "accumulate".into(),
                ));
                let mut bindings = vec![
                    (0, Chunk),
                    (2, Images),
                    (3, Total),
                    (4, AccumulatorWeights),
                    (5, Attributions),
                ];
                let spec = match folds_input {
                    Some(_) => {
                        // The accumulators' weighted sum first, then the first conv's transpose of
                        // it, once per image: adaptive runs keep an accumulator per cell, and each
                        // conv output is read once per accumulator instead of once per tap.
                        finish.push(dispatch(
                            Kernel::Finish,
                            elementwise(total_len).flag("SUM", true),
                            vec![(0, Chunk), (3, Total), (4, AccumulatorWeights), (5, Sum)],
                            Extent::Invocations {
                                per: total_len,
                                of: Count::Images,
                            },
                            "finish (sum of accumulators)".into(),
                        ));
                        bindings = vec![(0, Chunk), (1, Params(0)), (2, Images), (3, Sum)];
                        bindings.push((5, Attributions));
                        let spec = layer_spec(t.workgroup, &layers[0], shapes[0], shapes[1])
                            .u32("LEN", dim)
                            .u32("ACC_LEN", total_len)
                            .flag("FOLDED", true);
                        params_decl(spec, params(0), max_uniform_bytes)
                    }
                    None => elementwise(dim),
                };
                finish.push(dispatch(
                    Kernel::Finish,
                    spec,
                    bindings,
                    Extent::Invocations {
                        per: dim,
                        of: Count::Images,
                    },
                    "finish".into(),
                ));
            }
            Purpose::Training { adam } => {
                let winograd_slots: Vec<Slot> = dispatches
                    .iter()
                    .flat_map(|d| &d.bindings)
                    .map(|(_, s)| *s)
                    .filter(|s| matches!(s, Winograd(..)))
                    .collect();
                for (i, &len) in params_lens.iter().enumerate().filter(|(_, l)| **l > 0) {
                    let mut bindings =
                        vec![(0, Step), (1, Params(i)), (2, Grads(i)), (3, Moment(i, 0))];
                    if adam {
                        bindings.push((4, Moment(i, 1)));
                    }
                    let kernel = if adam { Kernel::Adam } else { Kernel::Sgd };
                    dispatches.push(dispatch(
                        kernel,
                        elementwise(len),
                        bindings,
                        Extent::Invocations {
                            per: len / 4,
                            of: Count::One,
                        },
                        format!("{} (layer {i})", kernel.name()),
                    ));
                    // The next step's Winograd kernels read the updated weights transformed.
                    let (forward, backward) = (
                        winograd_slots.contains(&Winograd(i, false)),
                        winograd_slots.contains(&Winograd(i, true)),
                    );
                    if let (Layer::Conv2d(c), true) = (layers[i], forward || backward) {
                        let mut bindings = vec![(1, Params(i))];
                        bindings.extend(forward.then_some((2, Winograd(i, false))));
                        bindings.extend(backward.then_some((3, Winograd(i, true))));
                        let filters = c.out_channels * c.in_channels;
                        dispatches.push(dispatch(
                            Kernel::WinogradWeights,
                            Spec::default()
                                .u32("WORKGROUP_SIZE", t.workgroup)
                                .u32("IN_C", c.in_channels)
                                .u32("OUT_C", c.out_channels)
                                .flag("FORWARD", forward)
                                .flag("BACKWARD", backward),
                            bindings,
                            Extent::Invocations {
                                per: filters,
                                of: Count::One,
                            },
                            format!("winograd_weights (layer {i})"),
                        ));
                    }
                }
            }
        }
        for d in dispatches.iter_mut().chain(&mut finish) {
            (d.flops_per_row, d.bytes_per_row) = cost(d, shapes);
            if t.fit_lane_rows && matches!(d.kernel, Kernel::LinearForward | Kernel::LinearBackward)
            {
                d.lane_rows = d.spec.get("RB").map(|rb| rb as usize);
            }
        }
        let mask_lens = (0..n)
            .filter(|&i| masks[i].is_some())
            .map(|i| shapes[i].len())
            .collect();
        Program {
            dispatches,
            finish,
            activation_lens,
            argmax_lens,
            argmax_windows,
            slope_len,
            mask_lens,
            soft,
            gradient_len: shapes.iter().map(|s| s.len()).max().unwrap(),
            partial_len,
            ends_len,
            total_len,
            folds_input_gradient: folds_input.is_some(),
            params_lens,
            dim,
            activation_of,
            gradient_of,
            forward_of,
            backward_of,
            windows,
        }
    }

    /// Every dispatch (then finish).
    pub fn all(&self) -> impl Iterator<Item = &Dispatch> {
        self.dispatches.iter().chain(&self.finish)
    }

    /// Bytes of the buffer behind `slot` for buffers of `sizes` (none for the layer weights, which
    /// are uploaded, nor for the uniforms).
    pub fn slot_bytes(&self, slot: Slot, sizes: Sizes) -> u64 {
        let f = |values: usize| 4 * values as u64;
        let rows = sizes.rows;
        match slot {
            Slot::Chunk | Slot::Step | Slot::Params(_) | Slot::Winograd(..) | Slot::Window(..) => 0,
            Slot::Images => f(2 * sizes.images * self.dim),
            Slot::Ends => f(2 * sizes.images * self.ends_len),
            Slot::Total => f(sizes.images * sizes.slots * self.total_len),
            Slot::Sum => f(sizes.images * self.total_len),
            Slot::AccumulatorWeights => f(sizes.images * sizes.slots),
            Slot::Attributions => f(sizes.images * self.dim),
            Slot::Diagnostics => f(12 * sizes.group_rows),
            Slot::Rows => f(12 * rows),
            Slot::Spans => f(4 * rows),
            // Soft kernels keep each row's tangents in a second block of rows.
            Slot::Activation(i) => {
                f(rows * self.activation_lens[i] * if self.soft { 2 } else { 1 })
            }
            Slot::Argmax(i) => {
                f(rows * self.argmax_lens[i] * if self.soft { self.argmax_windows[i] } else { 1 })
            }
            Slot::Mask(i) => f(rows * self.mask_lens[i]),
            Slot::PathSlope => f(rows * self.slope_len),
            Slot::Gradient(_) => f(rows * self.gradient_len),
            Slot::Labels => f(rows),
            Slot::Losses => f(2 * rows),
            Slot::Partial => f(rows * self.partial_len),
            Slot::Grads(i) | Slot::Moment(i, _) => f(self.params_lens[i]),
        }
    }

    /// The slots the dispatches bind, each once, and the diagnostics each chunk's row table is copied to.
    pub fn slots(&self) -> Vec<Slot> {
        let mut v: Vec<Slot> = Vec::new();
        if !self.finish.is_empty() {
            v.push(Slot::Diagnostics);
        }
        for (_, s) in self.all().flat_map(|d| &d.bindings) {
            if !v.contains(s) {
                v.push(*s);
            }
        }
        v
    }
}

/// Training: the dispatches that compute layer `i`'s weight gradient into `Grads(i)` from its input `x`
/// and output gradient `g`, and the values per row of the weight-gradient shares they use. With
/// `pooled` (the max-pool after a conv, its output shape and its choices' buffer), `g` is the pool's
/// output gradient and the kernel reads the conv's through the pool's choices.
#[allow(clippy::too_many_arguments)]
fn weight_grad_dispatches(
    t: &Tiling,
    layer: &Layer,
    i: usize,
    input: Shape,
    output: Shape,
    x: Slot,
    g: Slot,
    pooled: Option<(Pool2d, Shape, usize)>,
) -> (Vec<Dispatch>, usize) {
    use Slot::*;
    match layer {
        Layer::Conv2d(c) => {
            // Per-row shares, then a sum over rows in row order. By Winograd's F(3x3, 2x2) where
            // the output gradients come in 2x2 blocks: a 2x2 max-pool's windows, or the whole plane.
            let [_, oh, ow] = output.chw();
            let winograd = t.winograd != self::Winograd::Never
                && winograd::applies(c)
                && winograd_blocks(pooled.map(|(p, ..)| p.kernel), [oh, ow]);
            // Channel blocks: each input patch loaded serves OCB output channels, each output
            // gradient ICB input channels. For the Winograd kernel on lavapipe, the 16 -> 32 conv
            // took 1.14-1.15 of the Winograd input gradient's time with 32 x 4, 1.24-1.38 with
            // 16 x 8, 1.69-1.80 with 8 x 4 (BENCHMARKS.md); 32 x 8 took 0.85-0.92 of 32 x 4's,
            // 32 x 16 1.45.
            let (ocb, icb) = if winograd {
                (part(c.out_channels, 32), part(c.in_channels, 8))
            } else {
                (part(c.out_channels, 8), part(c.in_channels, 4))
            };
            let per_column = ocb * icb * c.kernel[0] * c.kernel[1];
            let columns = t.weight_grad_strip.min(t.weight_grad_products / per_column);
            let mut px = part(output.chw()[2], columns);
            let mut spec = layer_spec(t.workgroup, layer, input, output)
                .u32("OCB", ocb)
                .u32("ICB", icb)
                .flag("WINOGRAD", winograd);
            let mut bindings = vec![(0, Chunk), (2, x), (3, g), (4, Partial)];
            let kernel = if winograd {
                Kernel::Conv2dWinogradWeightGrad
            } else {
                Kernel::Conv2dWeightGrad
            };
            if let Some((p, pool_shape, argmax)) = pooled {
                let [_, ph, pw] = pool_shape.chw();
                spec = spec
                    .flag("POOLED", true)
                    .u32("POOL_H", ph)
                    .u32("POOL_W", pw);
                if !winograd {
                    // Strips of whole windows, so that each window's choice is read once.
                    px = px.next_multiple_of(p.kernel[1]);
                    spec = spec.u32("KPH", p.kernel[0]).u32("KPW", p.kernel[1]);
                }
                bindings.push((5, Argmax(argmax)));
            }
            // The Winograd kernel's tiles are 2x2 blocks (pool windows) of the whole plane.
            let spec = if winograd { spec } else { spec.u32("PX", px) };
            let tiles = c.out_channels.div_ceil(ocb) * c.in_channels.div_ceil(icb);
            let share = c.out_channels * (c.in_channels * c.kernel[0] * c.kernel[1] + 1);
            let bias = share - c.out_channels;
            let label = match pooled {
                Some(_) => format!("{} (layer {i}, through its max-pool)", kernel.name()),
                None => format!("{} (layer {i})", kernel.name()),
            };
            let shares = dispatch(
                kernel,
                spec,
                bindings,
                Extent::Tiles {
                    tiles,
                    rows_per_workgroup: t.workgroup,
                    of: Count::GradRows,
                },
                label,
            );
            let reduce = dispatch(
                Kernel::WeightReduce,
                Spec::default()
                    .u32("WORKGROUP_SIZE", t.workgroup)
                    .u32("P_LEN", share)
                    .u32("BIAS", bias)
                    .flag("HAS_BIAS", c.bias),
                vec![(0, Chunk), (2, Partial), (3, Grads(i))],
                Extent::Invocations {
                    per: share,
                    of: Count::One,
                },
                format!("weight_reduce (layer {i})"),
            );
            (vec![shares, reduce], share)
        }
        Layer::Linear(l) => {
            let [workgroup, jb, ob] = t.linear_grad;
            let ob = part(l.out_features, ob);
            let spec = Spec::default()
                .u32("WORKGROUP_SIZE", workgroup)
                .u32("IN_LEN", l.in_features)
                .u32("OUT_LEN", l.out_features)
                .u32("OB", ob)
                .u32("JB", jb)
                .flag("HAS_BIAS", l.bias);
            let j_blocks = (l.in_features + 1).div_ceil(workgroup * jb);
            let d = dispatch(
                Kernel::LinearWeightGrad,
                spec,
                vec![(0, Chunk), (2, x), (3, g), (4, Grads(i))],
                Extent::Fixed(l.out_features.div_ceil(ob) * j_blocks),
                format!("linear_weight_grad (layer {i})"),
            );
            (vec![d], 0)
        }
        _ => (Vec::new(), 0),
    }
}

/// (FLOPs, bytes) per counted item of dispatch `d`, from its specialization.
fn cost(d: &Dispatch, shapes: &[Shape]) -> (f64, f64) {
    let c = |name: &str| d.spec.get(name).unwrap_or(0) as f64;
    let (in_len, out_len) = (
        c("IN_C") * c("IN_H") * c("IN_W"),
        c("OUT_C") * c("OUT_H") * c("OUT_W"),
    );
    let window = c("KH") * c("KW");
    let dim = shapes[0].len() as f64;
    match d.kernel {
        // Winograd kernels count as the direct conv: the FLOPs a gradient evaluation needs, not the
        // fewer that Winograd spends on it.
        Kernel::Conv2dForward | Kernel::Conv2dWinogradForward if d.spec.has_flag("POOL") => {
            let pooled = c("OUT_C") * c("POOL_H") * c("POOL_W");
            let conv = pooled * c("KPH") * c("KPW");
            (
                2.0 * conv * c("IN_C") * window + conv,
                4.0 * (in_len + 2.0 * pooled),
            )
        }
        Kernel::Conv2dBackward | Kernel::Conv2dWinogradBackward if d.spec.has_flag("POOLED") => {
            let pooled = c("OUT_C") * c("POOL_H") * c("POOL_W");
            (
                2.0 * out_len * c("IN_C") * window,
                4.0 * (in_len + 2.0 * pooled),
            )
        }
        Kernel::Conv2dForward
        | Kernel::Conv2dBackward
        | Kernel::Conv2dWinogradForward
        | Kernel::Conv2dWinogradBackward
        | Kernel::Conv2dWeightGrad
        | Kernel::Conv2dWinogradWeightGrad => {
            (2.0 * out_len * c("IN_C") * window, 4.0 * (in_len + out_len))
        }
        Kernel::LinearForward | Kernel::LinearWeightGrad => (
            2.0 * c("IN_LEN") * c("OUT_LEN"),
            4.0 * (c("IN_LEN") + c("OUT_LEN")),
        ),
        Kernel::LinearBackward if d.spec.has_flag("SEED") => (0.0, 4.0 * c("IN_LEN")),
        Kernel::LinearBackward => (
            2.0 * c("IN_LEN") * c("OUT_LEN"),
            4.0 * (c("IN_LEN") + c("OUT_LEN")),
        ),
        // Per row only its outputs and choices (and slopes): the ends are read once per image.
        Kernel::MaxPoolPath => (
            2.0 * out_len * window,
            if d.spec.has_flag("SLOPE") { 12.0 } else { 8.0 } * out_len,
        ),
        Kernel::MaxPoolForward | Kernel::MaxPoolBackward => {
            (out_len * window, 4.0 * (in_len + 2.0 * out_len))
        }
        Kernel::AvgPoolForward | Kernel::AvgPoolBackward => {
            (out_len * window, 4.0 * (in_len + out_len))
        }
        Kernel::ReluForward | Kernel::ReluBackward => (c("LEN"), 8.0 * c("LEN")),
        Kernel::Path => (3.0 * dim, 12.0 * dim),
        // A folded first conv: diagnostics and accumulate read a max-pool's output gradient and
        // choices; finish sums the accumulators (per accumulator) and applies the conv's transpose
        // once per image.
        Kernel::Diagnostics if d.spec.has_flag("FOLDED") => (2.0 * c("LEN"), 8.0 * c("LEN")),
        Kernel::Accumulate if d.spec.has_flag("FOLDED") => (c("LEN"), 8.0 * c("LEN")),
        Kernel::Finish if d.spec.has_flag("SUM") => (2.0 * c("LEN"), 8.0 * c("LEN")),
        Kernel::Finish if d.spec.has_flag("FOLDED") => (
            2.0 * out_len * c("IN_C") * window,
            4.0 * (3.0 * dim + c("ACC_LEN")),
        ),
        Kernel::Diagnostics | Kernel::Finish => (2.0 * dim, 8.0 * dim),
        Kernel::Accumulate => (0.0, 4.0 * dim),
        Kernel::Seed => (0.0, 4.0 * c("CLASSES")),
        Kernel::Loss => (5.0 * c("CLASSES"), 12.0 * c("CLASSES")),
        Kernel::WeightReduce => (c("P_LEN"), 4.0 * c("P_LEN")),
        Kernel::Sgd | Kernel::Adam => (6.0 * c("LEN"), 20.0 * c("LEN")),
        // Per filter: 9 weights in, 16 values out per layout, about 50 additions each.
        Kernel::WinogradWeights => (
            100.0 * c("IN_C") * c("OUT_C"),
            4.0 * 41.0 * c("IN_C") * c("OUT_C"),
        ),
        // Runs after a program (texture.rs), never in one.
        Kernel::Colormap => (0.0, 0.0),
    }
}
