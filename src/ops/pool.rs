//! MaxPool2d and AvgPool2d: CPU twins of shaders/{max,avg}pool_{forward,backward}.wgsl.
//!
//! Max pooling pads with -inf and sends the gradient to the first maximum in row-major window order
//! (PyTorch's choice on ties). Average pooling counts padded zeros in the divisor (count_include_pad).

use crate::model::Pool2d;

/// Calls `f(out_index, in_index)` for every valid input position of every output window; padded
/// positions are skipped.
pub(crate) fn windows(
    p: &Pool2d,
    [c, ih, iw]: [usize; 3],
    [_, oh, ow]: [usize; 3],
    mut f: impl FnMut(usize, usize),
) {
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (ch * oh + oy) * ow + ox;
                for ky in 0..p.kernel[0] {
                    let Some(iy) = (oy * p.stride[0] + ky)
                        .checked_sub(p.padding[0])
                        .filter(|&y| y < ih)
                    else {
                        continue;
                    };
                    for kx in 0..p.kernel[1] {
                        let Some(ix) = (ox * p.stride[1] + kx)
                            .checked_sub(p.padding[1])
                            .filter(|&x| x < iw)
                        else {
                            continue;
                        };
                        f(o, (ch * ih + iy) * iw + ix);
                    }
                }
            }
        }
    }
}

/// Index into the input of each output's maximum.
pub fn argmax(p: &Pool2d, input: [usize; 3], output: [usize; 3], x: &[f64]) -> Vec<usize> {
    let n = output.iter().product();
    let mut best = vec![usize::MAX; n];
    windows(p, input, output, |o, i| {
        if best[o] == usize::MAX || x[i] > x[best[o]] {
            best[o] = i;
        }
    });
    best
}

pub fn max_forward(p: &Pool2d, input: [usize; 3], output: [usize; 3], x: &[f64]) -> Vec<f64> {
    argmax(p, input, output, x)
        .into_iter()
        .map(|i| x[i])
        .collect()
}

pub fn max_backward(
    p: &Pool2d,
    input: [usize; 3],
    output: [usize; 3],
    x: &[f64],
    gout: &[f64],
) -> Vec<f64> {
    let mut gin = vec![0.0; x.len()];
    for (o, i) in argmax(p, input, output, x).into_iter().enumerate() {
        gin[i] += gout[o];
    }
    gin
}

pub fn avg_forward(p: &Pool2d, input: [usize; 3], output: [usize; 3], x: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; output.iter().product()];
    let scale = 1.0 / (p.kernel[0] * p.kernel[1]) as f64;
    windows(p, input, output, |o, i| out[o] += x[i] * scale);
    out
}

pub fn avg_backward(p: &Pool2d, input: [usize; 3], output: [usize; 3], gout: &[f64]) -> Vec<f64> {
    let mut gin = vec![0.0; input.iter().product()];
    let scale = 1.0 / (p.kernel[0] * p.kernel[1]) as f64;
    windows(p, input, output, |o, i| gin[i] += gout[o] * scale);
    gin
}
