//! A linear layer's weights cut into uniform-buffer windows.
//!
//! On lavapipe a read from a uniform buffer costs about a third of a read from a storage buffer
//! (BENCHMARKS.md, "What lavapipe's memory operations cost"; what the windows gained: "Linear weights in
//! uniform windows"), but one uniform binding holds at most 64 KiB,
//! and the shipped CNN's 1568 -> 64 layer has 392 KiB of weights. So attribution binds them as several
//! windows: window `w` holds every output's weights for inputs `w * inputs ..< (w + 1) * inputs`, as
//! `[out][inputs]` (zero past the last input). The forward kernel's loop over inputs becomes one loop
//! per window, each reading its own binding; the input gradient's tiles lie in one window each and
//! pick it per workgroup. Keep in sync with the `window4` users in shaders/linear_forward.wgsl and
//! shaders/linear_backward.wgsl.

/// The binding of window 0; window `w` is at `FIRST_BINDING + w`.
pub const FIRST_BINDING: u32 = 8;

/// How a layer's weights are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Inputs per window (a multiple of the kernels' blocks and tiles of inputs).
    pub inputs: usize,
    pub count: usize,
    /// The layer's outputs.
    pub outputs: usize,
}

impl Windows {
    /// Windows for a layer of `in_len` inputs and `out_len` outputs whose kernels take inputs in
    /// aligned groups of `unit`, where one uniform binding (`max_uniform_bytes`) cannot hold its
    /// weights but `free_bindings` windows can. None: the weights fit one binding, or not enough.
    pub fn plan(
        in_len: usize,
        out_len: usize,
        unit: usize,
        max_uniform_bytes: u64,
        free_bindings: u32,
    ) -> Option<Windows> {
        // Whole vec4s per window.
        let per_window = (max_uniform_bytes / 16) as usize * 4;
        if in_len * out_len <= per_window {
            return None;
        }
        let inputs = per_window / out_len / unit * unit;
        if inputs == 0 {
            return None;
        }
        let count = in_len.div_ceil(inputs);
        (count <= free_bindings as usize).then_some(Windows {
            inputs,
            count,
            outputs: out_len,
        })
    }

    /// Values of window `w` from the layer's weights `[outputs][in_len]`.
    pub fn values(&self, weight: &[f32], w: usize) -> Vec<f32> {
        let in_len = weight.len() / self.outputs;
        let start = w * self.inputs;
        let end = (start + self.inputs).min(in_len);
        let mut v = vec![0.0; self.outputs * self.inputs];
        for (o, row) in weight.chunks_exact(in_len).enumerate() {
            v[o * self.inputs..][..end - start].copy_from_slice(&row[start..end]);
        }
        v
    }

    /// The windows' declarations and `fn window4(w, v)`: vec4 `v` of window `w` (a constant where
    /// the caller is unrolled over windows, so the switch folds away).
    pub fn decl(&self) -> String {
        let vec4s = self.outputs * self.inputs / 4;
        let mut s = String::new();
        for w in 0..self.count {
            s += &format!(
                "@group(0) @binding({}) var<uniform> weights{w}: array<vec4<f32>, {}>;\n",
                FIRST_BINDING as usize + w,
                vec4s
            );
        }
        s += "fn window4(w: u32, v: u32) -> vec4<f32> {\n    switch w {\n";
        for w in 0..self.count {
            let case = if w + 1 == self.count {
                "default".to_string()
            } else {
                format!("case {w}u")
            };
            s += &format!("        {case}: {{ return weights{w}[v]; }}\n");
        }
        s + "    }\n}"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_linear_layer_takes_seven_windows() {
        let w = Windows::plan(1568, 64, 32, 65536, 14).unwrap();
        assert_eq!((w.inputs, w.count, w.outputs), (256, 7, 64));
        // Fits one binding, or more windows than bindings: none.
        assert_eq!(Windows::plan(64, 10, 32, 65536, 14), None);
        assert_eq!(Windows::plan(1568, 64, 32, 65536, 6), None);
        // Too many outputs for one block of inputs per window.
        assert_eq!(Windows::plan(4096, 1024, 32, 65536, 14), None);
    }

    #[test]
    fn each_window_holds_every_outputs_weights_for_its_inputs() {
        let (ins, outs) = (10, 3);
        let weight: Vec<f32> = (0..ins * outs).map(|v| v as f32).collect();
        // 4 inputs per window: 3 windows, the last with 2 inputs and 2 zeros per output.
        let w = Windows {
            inputs: 4,
            count: 3,
            outputs: outs,
        };
        for k in 0..w.count {
            let v = w.values(&weight, k);
            assert_eq!(v.len(), outs * 4);
            for o in 0..outs {
                for j in 0..4 {
                    let i = k * 4 + j;
                    let want = if i < ins { weight[o * ins + i] } else { 0.0 };
                    assert_eq!(v[o * 4 + j], want, "window {k}, output {o}, input {i}");
                }
            }
        }
    }
}
