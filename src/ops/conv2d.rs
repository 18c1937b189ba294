//! Conv2d: CPU twin of shaders/conv2d_forward.wgsl and shaders/conv2d_backward.wgsl.
//!
//! Weights are OIHW as in PyTorch; padding is zeros; dilation 1, groups 1.

use super::Params64;
use crate::model::Conv2d;

/// Input coordinate under kernel tap `k` of output coordinate `o`, if it lies inside the input.
fn tap(o: usize, k: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    (o * stride + k).checked_sub(pad).filter(|&i| i < size)
}

/// The output coordinates whose tap `k` lies inside the input: a contiguous range, so the inner loops
/// below run without per-element checks (the exact-IG reference runs them thousands of times per path).
fn taps_inside(
    outputs: usize,
    k: usize,
    stride: usize,
    pad: usize,
    size: usize,
) -> std::ops::Range<usize> {
    let first = (0..outputs).find(|&o| tap(o, k, stride, pad, size).is_some());
    match first {
        Some(lo) => {
            lo..(lo..outputs)
                .take_while(|&o| tap(o, k, stride, pad, size).is_some())
                .last()
                .unwrap()
                + 1
        }
        None => 0..0,
    }
}

pub fn forward(
    c: &Conv2d,
    [ic, ih, iw]: [usize; 3],
    [oc, oh, ow]: [usize; 3],
    p: &Params64,
    x: &[f64],
) -> Vec<f64> {
    let [kh, kw] = c.kernel;
    let [sy, sx] = c.stride;
    let mut out = vec![0.0; oc * oh * ow];
    for o in 0..oc {
        let plane = &mut out[o * oh * ow..(o + 1) * oh * ow];
        // Per output the products are summed in (i, ky, kx) order, then the bias is added.
        for i in 0..ic {
            for ky in 0..kh {
                for kx in 0..kw {
                    let w = p.weight[((o * ic + i) * kh + ky) * kw + kx];
                    let cols = taps_inside(ow, kx, sx, c.padding[1], iw);
                    for oy in taps_inside(oh, ky, sy, c.padding[0], ih) {
                        let iy = oy * sy + ky - c.padding[0];
                        let row = &x[(i * ih + iy) * iw..(i * ih + iy + 1) * iw];
                        let out_row = &mut plane[oy * ow..(oy + 1) * ow][cols.clone()];
                        let first = cols.start * sx + kx - c.padding[1];
                        for (o, v) in out_row.iter_mut().zip(row[first..].iter().step_by(sx)) {
                            *o += w * v;
                        }
                    }
                }
            }
        }
        for v in plane.iter_mut() {
            *v += p.bias(o);
        }
    }
    out
}

pub fn backward(
    c: &Conv2d,
    [ic, ih, iw]: [usize; 3],
    [oc, oh, ow]: [usize; 3],
    p: &Params64,
    gout: &[f64],
) -> Vec<f64> {
    let [kh, kw] = c.kernel;
    let [sy, sx] = c.stride;
    let mut gin = vec![0.0; ic * ih * iw];
    for o in 0..oc {
        let g = &gout[o * oh * ow..(o + 1) * oh * ow];
        for i in 0..ic {
            for ky in 0..kh {
                for kx in 0..kw {
                    let w = p.weight[((o * ic + i) * kh + ky) * kw + kx];
                    let cols = taps_inside(ow, kx, sx, c.padding[1], iw);
                    for oy in taps_inside(oh, ky, sy, c.padding[0], ih) {
                        let iy = oy * sy + ky - c.padding[0];
                        let row = &mut gin[(i * ih + iy) * iw..(i * ih + iy + 1) * iw];
                        let g_row = &g[oy * ow..(oy + 1) * ow][cols.clone()];
                        let first = cols.start * sx + kx - c.padding[1];
                        for (r, g) in row[first..].iter_mut().step_by(sx).zip(g_row) {
                            *r += w * g;
                        }
                    }
                }
            }
        }
    }
    gin
}

/// Gradients of the weights and bias for one sample: dW[o,i,ky,kx] = sum over outputs of gout * x under
/// the tap, db[o] = sum of gout over the output plane.
pub fn weight_grad(
    c: &Conv2d,
    [ic, ih, iw]: [usize; 3],
    [oc, oh, ow]: [usize; 3],
    x: &[f64],
    gout: &[f64],
) -> Params64 {
    let [kh, kw] = c.kernel;
    let mut weight = vec![0.0; oc * ic * kh * kw];
    let mut bias = vec![0.0; oc];
    for o in 0..oc {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = gout[(o * oh + oy) * ow + ox];
                bias[o] += g;
                for i in 0..ic {
                    for ky in 0..kh {
                        let Some(iy) = tap(oy, ky, c.stride[0], c.padding[0], ih) else {
                            continue;
                        };
                        for kx in 0..kw {
                            let Some(ix) = tap(ox, kx, c.stride[1], c.padding[1], iw) else {
                                continue;
                            };
                            weight[((o * ic + i) * kh + ky) * kw + kx] +=
                                g * x[(i * ih + iy) * iw + ix];
                        }
                    }
                }
            }
        }
    }
    if !c.bias {
        bias.clear();
    }
    Params64 { weight, bias }
}
