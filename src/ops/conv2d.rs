//! Conv2d: CPU twin of shaders/conv2d_forward.wgsl and shaders/conv2d_backward.wgsl.
//!
//! Weights are OIHW as in PyTorch; padding is zeros; dilation 1, groups 1.

use super::Params64;
use crate::model::Conv2d;

/// Input coordinate under kernel tap `k` of output coordinate `o`, if it lies inside the input.
fn tap(o: usize, k: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    (o * stride + k).checked_sub(pad).filter(|&i| i < size)
}

pub fn forward(
    c: &Conv2d,
    [ic, ih, iw]: [usize; 3],
    [oc, oh, ow]: [usize; 3],
    p: &Params64,
    x: &[f64],
) -> Vec<f64> {
    let [kh, kw] = c.kernel;
    let mut out = vec![0.0; oc * oh * ow];
    for o in 0..oc {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = 0.0;
                for i in 0..ic {
                    for ky in 0..kh {
                        let Some(iy) = tap(oy, ky, c.stride[0], c.padding[0], ih) else {
                            continue;
                        };
                        for kx in 0..kw {
                            let Some(ix) = tap(ox, kx, c.stride[1], c.padding[1], iw) else {
                                continue;
                            };
                            acc += p.weight[((o * ic + i) * kh + ky) * kw + kx]
                                * x[(i * ih + iy) * iw + ix];
                        }
                    }
                }
                out[(o * oh + oy) * ow + ox] = acc + p.bias(o);
            }
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
    let mut gin = vec![0.0; ic * ih * iw];
    for o in 0..oc {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = gout[(o * oh + oy) * ow + ox];
                for i in 0..ic {
                    for ky in 0..kh {
                        let Some(iy) = tap(oy, ky, c.stride[0], c.padding[0], ih) else {
                            continue;
                        };
                        for kx in 0..kw {
                            let Some(ix) = tap(ox, kx, c.stride[1], c.padding[1], iw) else {
                                continue;
                            };
                            gin[(i * ih + iy) * iw + ix] +=
                                p.weight[((o * ic + i) * kh + ky) * kw + kx] * g;
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
