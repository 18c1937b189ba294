//! The WGSL kernels: their sources, specialization, and compiled pipelines.
//!
//! A kernel's source is a generated header (its specialization constants, e.g. `const IN_C: u32 = 16u;`),
//! then shaders/common.wgsl, then the kernel's own file. Kernel files may hold `//#if NAME`, `//#else` and
//! `//#endif` lines; a block is kept when the flag NAME is set in the kernel's [`Spec`], and
//! `//#unroll VAR COUNT` ... `//#end` blocks, repeated COUNT times (`unroll`). Every layer gets its own
//! pipeline, so shapes and tile sizes are constants the compiler can fold.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// One compute kernel, one file under shaders/.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Path,
    Conv2dForward,
    Conv2dBackward,
    Conv2dWinogradForward,
    Conv2dWinogradBackward,
    Conv2dWinogradWeightGrad,
    ReluForward,
    ReluBackward,
    MaxPoolForward,
    /// A first max-pool at the path's points from a first conv's outputs at the path's ends.
    MaxPoolPath,
    MaxPoolBackward,
    AvgPoolForward,
    AvgPoolBackward,
    LinearForward,
    LinearBackward,
    Seed,
    Accumulate,
    Finish,
    Diagnostics,
    Conv2dWeightGrad,
    WeightReduce,
    LinearWeightGrad,
    Loss,
    Sgd,
    Adam,
    WinogradWeights,
    /// Attribution maps to RGBA8 texels (texture.rs); no program uses it.
    Colormap,
}

impl Kernel {
    pub const ALL: [Kernel; 27] = [
        Kernel::Path,
        Kernel::Conv2dForward,
        Kernel::Conv2dBackward,
        Kernel::Conv2dWinogradForward,
        Kernel::Conv2dWinogradBackward,
        Kernel::Conv2dWinogradWeightGrad,
        Kernel::ReluForward,
        Kernel::ReluBackward,
        Kernel::MaxPoolForward,
        Kernel::MaxPoolPath,
        Kernel::MaxPoolBackward,
        Kernel::AvgPoolForward,
        Kernel::AvgPoolBackward,
        Kernel::LinearForward,
        Kernel::LinearBackward,
        Kernel::Seed,
        Kernel::Accumulate,
        Kernel::Finish,
        Kernel::Diagnostics,
        Kernel::Conv2dWeightGrad,
        Kernel::WeightReduce,
        Kernel::LinearWeightGrad,
        Kernel::Loss,
        Kernel::Sgd,
        Kernel::Adam,
        Kernel::WinogradWeights,
        Kernel::Colormap,
    ];

    /// The kernel's file under shaders/ (and its label in pipelines and timings).
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::Path => "path",
            Kernel::Conv2dForward => "conv2d_forward",
            Kernel::Conv2dBackward => "conv2d_backward",
            Kernel::Conv2dWinogradForward => "conv2d_winograd_forward",
            Kernel::Conv2dWinogradBackward => "conv2d_winograd_backward",
            Kernel::Conv2dWinogradWeightGrad => "conv2d_winograd_weight_grad",
            Kernel::ReluForward => "relu_forward",
            Kernel::ReluBackward => "relu_backward",
            Kernel::MaxPoolForward => "maxpool_forward",
            Kernel::MaxPoolPath => "maxpool_path",
            Kernel::MaxPoolBackward => "maxpool_backward",
            Kernel::AvgPoolForward => "avgpool_forward",
            Kernel::AvgPoolBackward => "avgpool_backward",
            Kernel::LinearForward => "linear_forward",
            Kernel::LinearBackward => "linear_backward",
            Kernel::Seed => "seed",
            Kernel::Accumulate => "accumulate",
            Kernel::Finish => "finish",
            Kernel::Diagnostics => "diagnostics",
            Kernel::Conv2dWeightGrad => "conv2d_weight_grad",
            Kernel::WeightReduce => "weight_reduce",
            Kernel::LinearWeightGrad => "linear_weight_grad",
            Kernel::Loss => "loss",
            Kernel::Sgd => "sgd",
            Kernel::Adam => "adam",
            Kernel::WinogradWeights => "winograd_weights",
            Kernel::Colormap => "colormap",
        }
    }

    fn body(&self) -> &'static str {
        match self {
            Kernel::Path => include_str!("../../shaders/path.wgsl"),
            Kernel::Conv2dForward => include_str!("../../shaders/conv2d_forward.wgsl"),
            Kernel::Conv2dBackward => include_str!("../../shaders/conv2d_backward.wgsl"),
            Kernel::Conv2dWinogradForward => {
                include_str!("../../shaders/conv2d_winograd_forward.wgsl")
            }
            Kernel::Conv2dWinogradBackward => {
                include_str!("../../shaders/conv2d_winograd_backward.wgsl")
            }
            Kernel::Conv2dWinogradWeightGrad => {
                include_str!("../../shaders/conv2d_winograd_weight_grad.wgsl")
            }
            Kernel::ReluForward => include_str!("../../shaders/relu_forward.wgsl"),
            Kernel::ReluBackward => include_str!("../../shaders/relu_backward.wgsl"),
            Kernel::MaxPoolForward => include_str!("../../shaders/maxpool_forward.wgsl"),
            Kernel::MaxPoolPath => include_str!("../../shaders/maxpool_path.wgsl"),
            Kernel::MaxPoolBackward => include_str!("../../shaders/maxpool_backward.wgsl"),
            Kernel::AvgPoolForward => include_str!("../../shaders/avgpool_forward.wgsl"),
            Kernel::AvgPoolBackward => include_str!("../../shaders/avgpool_backward.wgsl"),
            Kernel::LinearForward => include_str!("../../shaders/linear_forward.wgsl"),
            Kernel::LinearBackward => include_str!("../../shaders/linear_backward.wgsl"),
            Kernel::Seed => include_str!("../../shaders/seed.wgsl"),
            Kernel::Accumulate => include_str!("../../shaders/accumulate.wgsl"),
            Kernel::Finish => include_str!("../../shaders/finish.wgsl"),
            Kernel::Diagnostics => include_str!("../../shaders/diagnostics.wgsl"),
            Kernel::Conv2dWeightGrad => include_str!("../../shaders/conv2d_weight_grad.wgsl"),
            Kernel::WeightReduce => include_str!("../../shaders/weight_reduce.wgsl"),
            Kernel::LinearWeightGrad => include_str!("../../shaders/linear_weight_grad.wgsl"),
            Kernel::Loss => include_str!("../../shaders/loss.wgsl"),
            Kernel::Sgd => include_str!("../../shaders/sgd.wgsl"),
            Kernel::Adam => include_str!("../../shaders/adam.wgsl"),
            Kernel::WinogradWeights => include_str!("../../shaders/winograd_weights.wgsl"),
            Kernel::Colormap => include_str!("../../shaders/colormap.wgsl"),
        }
    }

    /// The complete WGSL source of this kernel specialized by `spec`.
    pub fn source(&self, spec: &Spec) -> Result<String> {
        let count = |name: &str| spec.get(name);
        let body = preprocess(self.body(), &spec.flags)
            .and_then(|s| unroll(&s, &count))
            .map_err(|e| Error::Gpu(format!("shaders/{}.wgsl: {e}", self.name())))?;
        let common = preprocess(COMMON, &spec.flags)
            .and_then(|s| unroll(&s, &count))
            .map_err(|e| Error::Gpu(format!("shaders/common.wgsl: {e}")))?;
        Ok(format!(
            "// ---- specialization of shaders/{name}.wgsl ----\n{}\n// ---- shaders/common.wgsl ----\n{common}\n\
             // ---- shaders/{name}.wgsl ----\n{body}",
            spec.header(),
            name = self.name()
        ))
    }
}

/// Compile-time values of one kernel instance: constants and the `//#if` flags that are set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spec {
    consts: Vec<(&'static str, i64)>,
    flags: Vec<&'static str>,
    /// Extra declarations, e.g. a uniform array whose length depends on the layer.
    decls: Vec<String>,
}

impl Spec {
    /// An unsigned constant `const NAME: u32 = value;`.
    pub fn u32(mut self, name: &'static str, value: usize) -> Spec {
        self.consts.push((name, value as i64));
        self
    }

    /// The same spec with constant `name` set to `value` (replacing it, if set).
    pub fn with_u32(mut self, name: &'static str, value: usize) -> Spec {
        self.consts.retain(|(n, _)| *n != name);
        self.u32(name, value)
    }

    /// A signed constant `const NAME: i32 = value;` (names ending in `_I`, by convention).
    pub fn i32(mut self, name: &'static str, value: i64) -> Spec {
        self.consts.push((name, value));
        self
    }

    /// Sets flag `name` when `on`, keeping the `//#if name` blocks.
    pub fn flag(mut self, name: &'static str, on: bool) -> Spec {
        if on {
            self.flags.push(name);
        }
        self
    }

    pub fn decl(mut self, text: String) -> Spec {
        self.decls.push(text);
        self
    }

    pub fn has_flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }

    /// The value of constant `name`, if set.
    pub fn get(&self, name: &str) -> Option<i64> {
        self.consts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    fn header(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.consts {
            if name.ends_with("_I") {
                out += &format!("const {name}: i32 = {value}i;\n");
            } else {
                out += &format!("const {name}: u32 = {value}u;\n");
            }
        }
        for d in &self.decls {
            out += d;
            out.push('\n');
        }
        out
    }
}

/// Keeps the lines of `//#if NAME` blocks whose flag is set (and of their `//#else` when it is not).
fn preprocess(source: &str, flags: &[&str]) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(source.len());
    // For each open block: (is this branch kept, was any branch of the block kept).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let t = line.trim();
        let outer = stack.iter().all(|(keep, _)| *keep);
        if let Some(name) = t.strip_prefix("//#if ") {
            let on = flags.contains(&name.trim());
            stack.push((on, on));
        } else if t == "//#else" {
            let top = stack
                .last_mut()
                .ok_or(format!("line {}: //#else without //#if", n + 1))?;
            *top = (!top.1, true);
        } else if t == "//#endif" {
            stack
                .pop()
                .ok_or(format!("line {}: //#endif without //#if", n + 1))?;
        } else if outer {
            out += line;
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err("//#if without //#endif".into());
    }
    Ok(out)
}

/// Repeats the lines between `//#unroll VAR COUNT` and `//#end` COUNT times (numbers and constants of
/// the spec joined by `*`, `+`, `-`, e.g. `2*PX+2`), with the identifier VAR replaced by `0u`, `1u`, ...
/// in each copy. Why: lavapipe (Mesa 22.3) compiles shader loops as loops. An array indexed by a loop
/// counter lives in memory, read by gathers; a value a loop carries from one iteration to the next is
/// blended with the loop's mask at every write; and inside any loop even a uniform load at a constant
/// offset is a gather over the 8 lanes (BENCHMARKS.md, "Sums that no loop carries").
fn unroll(
    source: &str,
    count: &dyn Fn(&str) -> Option<i64>,
) -> std::result::Result<String, String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::with_capacity(source.len());
    let mut n = 0;
    while n < lines.len() {
        let t = lines[n].trim();
        let Some(args) = t.strip_prefix("//#unroll ") else {
            if t == "//#end" {
                return Err(format!("line {}: //#end without //#unroll", n + 1));
            }
            out += lines[n];
            out.push('\n');
            n += 1;
            continue;
        };
        let mut words = args.split_whitespace();
        let (Some(var), Some(times), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("line {}: expected //#unroll VAR COUNT", n + 1));
        };
        let times = evaluate(times, count)
            .ok_or(format!("line {}: unknown unroll count {times}", n + 1))?;
        // The block's end: the //#end at depth zero.
        let mut depth = 0;
        let mut end = None;
        for (m, line) in lines.iter().enumerate().skip(n + 1) {
            let t = line.trim();
            if t.starts_with("//#unroll ") {
                depth += 1;
            } else if t == "//#end" {
                if depth == 0 {
                    end = Some(m);
                    break;
                }
                depth -= 1;
            }
        }
        let end = end.ok_or(format!("line {}: //#unroll without //#end", n + 1))?;
        let block = lines[n + 1..end].join("\n");
        for i in 0..times {
            out += &unroll(&replace_identifier(&block, var, &format!("{i}u")), count)?;
        }
        n = end + 1;
    }
    Ok(out)
}

/// The value of `expr`: numbers and spec constants joined by `*`, `+` and `-` (no spaces, no brackets).
fn evaluate(expr: &str, count: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
    let factor = |f: &str| f.parse::<i64>().ok().or_else(|| count(f));
    let term = |t: &str| t.split('*').map(factor).product::<Option<i64>>();
    let mut total = 0;
    let mut sign = 1;
    let mut start = 0;
    for (i, c) in expr.char_indices().chain([(expr.len(), '+')]) {
        if c == '+' || c == '-' {
            total += sign * term(&expr[start..i])?;
            sign = if c == '+' { 1 } else { -1 };
            start = i + 1;
        }
    }
    Some(total)
}

/// `text` with every whole identifier `name` replaced by `with`.
fn replace_identifier(text: &str, name: &str, with: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + name.len()..].chars().next();
        out += &rest[..at];
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            out += name;
        } else {
            out += with;
        }
        rest = &rest[at + name.len()..];
    }
    out + rest
}

/// Compiled pipelines of one device, shared by every engine on it and keyed by source text.
#[derive(Default)]
pub struct Pipelines {
    cache: Mutex<HashMap<String, wgpu::ComputePipeline>>,
}

impl Pipelines {
    /// The pipeline of `kernel` specialized by `spec`, compiling it on first use.
    pub fn get(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        spec: &Spec,
    ) -> Result<wgpu::ComputePipeline> {
        let source = kernel.source(spec)?;
        let mut cache = self.cache.lock().unwrap();
        if let Some(p) = cache.get(&source) {
            return Ok(p.clone());
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name()),
            source: wgpu::ShaderSource::Wgsl(source.clone().into()),
        };
        // SAFETY: every index a kernel computes stays inside the buffers the engine binds: the engine
        // sizes each buffer for the rows and shapes the kernel is specialized for, and the kernels
        // guard rows past the chunk's end. The tests check results against the CPU twin on every layer
        // and shape variety. Without the runtime checks the CPU adapter runs the kernels markedly faster.
        let module = unsafe {
            device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.name()),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "compiling shaders/{}.wgsl failed: {e}",
                kernel.name()
            )));
        }
        cache.insert(source, pipeline.clone());
        Ok(pipeline)
    }
}

#[cfg(test)]
mod tests {
    use super::{preprocess, unroll};

    #[test]
    fn unroll_repeats_blocks_with_constants() {
        let count = |name: &str| (name == "N").then_some(2);
        let src = "a\n//#unroll i N\nx[i] = i_b;\n//#unroll j 2\ny[i][j];\n//#end\n//#end\nb\n";
        assert_eq!(
            unroll(src, &count).unwrap(),
            "a\nx[0u] = i_b;\ny[0u][0u];\ny[0u][1u];\nx[1u] = i_b;\ny[1u][0u];\ny[1u][1u];\nb\n"
        );
        assert_eq!(
            unroll("//#unroll i 2*N-1\ni\n//#end\n", &count).unwrap(),
            "0u\n1u\n2u\n"
        );
        assert!(unroll("//#unroll i M\n//#end\n", &count).is_err());
        assert!(unroll("//#unroll i 2\n", &count).is_err());
        assert!(unroll("//#end\n", &count).is_err());
    }

    #[test]
    fn preprocessor_keeps_flagged_blocks() {
        let src = "a\n//#if X\nb\n//#if Y\nc\n//#else\nd\n//#endif\n//#else\ne\n//#endif\nf\n";
        assert_eq!(preprocess(src, &["X"]).unwrap(), "a\nb\nd\nf\n");
        assert_eq!(preprocess(src, &["X", "Y"]).unwrap(), "a\nb\nc\nf\n");
        assert_eq!(preprocess(src, &["Y"]).unwrap(), "a\ne\nf\n");
        assert!(preprocess("//#if X\n", &[]).is_err());
        assert!(preprocess("//#endif\n", &[]).is_err());
    }
}
