//! Layer types, shape inference and the architecture grammar shared by model files and `gig train --arch`.
//!
//! Grammar (layers separated by whitespace):
//!
//! ```text
//! conv(IN,OUT,K[,sS][,pP][,nobias])   Conv2d; K, S, P are N or HxW (e.g. 3, 3x5, s2, p1x0)
//! relu                                ReLU
//! maxpool(K[,sS][,pP])  | maxpoolK    MaxPool2d; stride defaults to the kernel
//! avgpool(K[,sS][,pP])  | avgpoolK    AvgPool2d (count_include_pad, PyTorch's default)
//! flatten                             Flatten (start_dim 1)
//! linear(IN,OUT[,nobias])             Linear
//! ```

use std::fmt;

/// The shape of one sample's activation: an image-like `[C, H, W]` or a flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Chw([usize; 3]),
    Flat(usize),
}

impl Shape {
    /// Number of f32 values per sample.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Chw([c, h, w]) => c * h * w,
            Shape::Flat(n) => n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[C, H, W]`, with a flat vector of n values seen as `[n, 1, 1]`.
    pub fn chw(&self) -> [usize; 3] {
        match *self {
            Shape::Chw(s) => s,
            Shape::Flat(n) => [n, 1, 1],
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Chw([c, h, w]) => write!(f, "[{c}, {h}, {w}]"),
            Shape::Flat(n) => write!(f, "[{n}]"),
        }
    }
}

/// nn.Conv2d with dilation 1, groups 1 and zero padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    /// (height, width)
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub bias: bool,
}

/// nn.MaxPool2d / nn.AvgPool2d with floor rounding (ceil_mode false).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

/// nn.Linear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

/// One layer of a sequential CNN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Conv2d(Conv2d),
    Relu,
    MaxPool2d(Pool2d),
    AvgPool2d(Pool2d),
    Flatten,
    Linear(Linear),
}

/// Output size of a sliding window along one axis, or None when the window does not fit.
fn window_count(size: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = size + 2 * padding;
    (padded >= kernel).then(|| (padded - kernel) / stride + 1)
}

impl Layer {
    /// The shape this layer produces from `input`, or why it cannot take that input.
    pub fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        let spatial = |what: &str| match input {
            Shape::Chw(s) => Ok(s),
            Shape::Flat(_) => Err(format!(
                "{what} needs an image-shaped input but gets the flat vector {input}"
            )),
        };
        let windows = |[_, h, w]: [usize; 3], k: [usize; 2], s: [usize; 2], p: [usize; 2]| match (
            window_count(h, k[0], s[0], p[0]),
            window_count(w, k[1], s[1], p[1]),
        ) {
            (Some(oh), Some(ow)) => Ok([oh, ow]),
            _ => Err(format!(
                "a {}x{} window does not fit the input {input} with padding {}x{}",
                k[0], k[1], p[0], p[1]
            )),
        };
        match self {
            Layer::Conv2d(c) => {
                let s = spatial("conv")?;
                if s[0] != c.in_channels {
                    return Err(format!(
                        "expects {} input channels but the input {input} has {}",
                        c.in_channels, s[0]
                    ));
                }
                let [oh, ow] = windows(s, c.kernel, c.stride, c.padding)?;
                Ok(Shape::Chw([c.out_channels, oh, ow]))
            }
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => {
                let s = spatial("pooling")?;
                let [oh, ow] = windows(s, p.kernel, p.stride, p.padding)?;
                Ok(Shape::Chw([s[0], oh, ow]))
            }
            Layer::Relu => Ok(input),
            Layer::Flatten => Ok(Shape::Flat(input.len())),
            Layer::Linear(l) => match input {
                Shape::Flat(n) if n == l.in_features => Ok(Shape::Flat(l.out_features)),
                Shape::Flat(n) => Err(format!(
                    "expects {} input features but the input has {n}",
                    l.in_features
                )),
                Shape::Chw(_) => Err(format!(
                    "needs a flat input but gets {input}; put `flatten` before it"
                )),
            },
        }
    }

    /// Shapes of the weight and bias tensors, in PyTorch's layout (OIHW, [out, in]).
    pub fn param_shapes(&self) -> Option<(Vec<usize>, Option<Vec<usize>>)> {
        match self {
            Layer::Conv2d(c) => Some((
                vec![c.out_channels, c.in_channels, c.kernel[0], c.kernel[1]],
                c.bias.then(|| vec![c.out_channels]),
            )),
            Layer::Linear(l) => Some((
                vec![l.out_features, l.in_features],
                l.bias.then(|| vec![l.out_features]),
            )),
            _ => None,
        }
    }
}

fn pair(v: [usize; 2]) -> String {
    if v[0] == v[1] {
        v[0].to_string()
    } else {
        format!("{}x{}", v[0], v[1])
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let window = |name: &str, p: &Pool2d, f: &mut fmt::Formatter<'_>| {
            if p.stride == p.kernel && p.padding == [0, 0] && p.kernel[0] == p.kernel[1] {
                return write!(f, "{name}{}", p.kernel[0]);
            }
            write!(f, "{name}({}", pair(p.kernel))?;
            if p.stride != p.kernel {
                write!(f, ",s{}", pair(p.stride))?;
            }
            if p.padding != [0, 0] {
                write!(f, ",p{}", pair(p.padding))?;
            }
            write!(f, ")")
        };
        match self {
            Layer::Conv2d(c) => {
                write!(
                    f,
                    "conv({},{},{}",
                    c.in_channels,
                    c.out_channels,
                    pair(c.kernel)
                )?;
                if c.stride != [1, 1] {
                    write!(f, ",s{}", pair(c.stride))?;
                }
                if c.padding != [0, 0] {
                    write!(f, ",p{}", pair(c.padding))?;
                }
                if !c.bias {
                    write!(f, ",nobias")?;
                }
                write!(f, ")")
            }
            Layer::Relu => write!(f, "relu"),
            Layer::MaxPool2d(p) => window("maxpool", p, f),
            Layer::AvgPool2d(p) => window("avgpool", p, f),
            Layer::Flatten => write!(f, "flatten"),
            Layer::Linear(l) => {
                write!(f, "linear({},{}", l.in_features, l.out_features)?;
                if !l.bias {
                    write!(f, ",nobias")?;
                }
                write!(f, ")")
            }
        }
    }
}

/// Writes a layer list in the grammar [`parse_arch`] reads.
pub fn format_arch(layers: &[Layer]) -> String {
    layers
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses `N` or `HxW` into (height, width).
fn parse_pair(text: &str, what: &str) -> Result<[usize; 2], String> {
    let num = |s: &str| {
        s.parse::<usize>()
            .ok()
            .filter(|&v| v > 0 || what == "padding")
            .ok_or_else(|| format!("`{text}` is not a valid {what}"))
    };
    match text.split_once('x') {
        Some((h, w)) => Ok([num(h)?, num(w)?]),
        None => {
            let v = num(text)?;
            Ok([v, v])
        }
    }
}

/// Options after the leading numbers: `sS`, `pP`, `nobias`.
struct Options {
    stride: Option<[usize; 2]>,
    padding: [usize; 2],
    bias: bool,
}

fn parse_options(args: &[&str], allow_bias: bool) -> Result<Options, String> {
    let mut o = Options {
        stride: None,
        padding: [0, 0],
        bias: true,
    };
    for &a in args {
        if let Some(s) = a.strip_prefix('s') {
            o.stride = Some(parse_pair(s, "stride")?);
        } else if let Some(p) = a.strip_prefix('p') {
            o.padding = parse_pair(p, "padding")?;
        } else if a == "nobias" && allow_bias {
            o.bias = false;
        } else {
            return Err(format!("unknown option `{a}`"));
        }
    }
    Ok(o)
}

fn parse_count(text: &str, what: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("`{text}` is not a valid {what} (a positive integer)"))
}

fn parse_pool(args: &[&str]) -> Result<Pool2d, String> {
    let (k, rest) = args
        .split_first()
        .ok_or("a pooling layer needs a kernel size")?;
    let kernel = parse_pair(k, "kernel size")?;
    let o = parse_options(rest, false)?;
    let pool = Pool2d {
        kernel,
        stride: o.stride.unwrap_or(kernel),
        padding: o.padding,
    };
    if pool.padding[0] * 2 > kernel[0] || pool.padding[1] * 2 > kernel[1] {
        return Err("padding must be at most half the kernel size (as in PyTorch)".into());
    }
    Ok(pool)
}

fn parse_layer(token: &str) -> Result<Layer, String> {
    let (name, args): (&str, Vec<&str>) = match token.split_once('(') {
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("`{token}` is missing its closing parenthesis"))?;
            (name, inner.split(',').map(str::trim).collect())
        }
        None => (token, Vec::new()),
    };
    let bare = args.is_empty();
    match name {
        "relu" if bare => Ok(Layer::Relu),
        "flatten" if bare => Ok(Layer::Flatten),
        "conv" if args.len() >= 3 => {
            let o = parse_options(&args[3..], true)?;
            Ok(Layer::Conv2d(Conv2d {
                in_channels: parse_count(args[0], "channel count")?,
                out_channels: parse_count(args[1], "channel count")?,
                kernel: parse_pair(args[2], "kernel size")?,
                stride: o.stride.unwrap_or([1, 1]),
                padding: o.padding,
                bias: o.bias,
            }))
        }
        "linear" if args.len() >= 2 => {
            let o = parse_options(&args[2..], true)?;
            if o.stride.is_some() || o.padding != [0, 0] {
                return Err("linear takes only `nobias` as an option".into());
            }
            Ok(Layer::Linear(Linear {
                in_features: parse_count(args[0], "feature count")?,
                out_features: parse_count(args[1], "feature count")?,
                bias: o.bias,
            }))
        }
        "maxpool" if !bare => Ok(Layer::MaxPool2d(parse_pool(&args)?)),
        "avgpool" if !bare => Ok(Layer::AvgPool2d(parse_pool(&args)?)),
        _ => {
            for (prefix, make) in [
                ("maxpool", Layer::MaxPool2d as fn(Pool2d) -> Layer),
                ("avgpool", Layer::AvgPool2d),
            ] {
                if let Some(k) = name.strip_prefix(prefix).filter(|k| !k.is_empty() && bare) {
                    return Ok(make(parse_pool(&[k])?));
                }
            }
            Err(format!(
                "unknown layer `{token}` (expected conv(IN,OUT,K,..), relu, maxpoolK, \
                 avgpoolK, flatten or linear(IN,OUT))"
            ))
        }
    }
}

/// Parses an architecture string such as
/// `conv(1,16,3,p1) relu maxpool2 flatten linear(3136,10)`.
pub fn parse_arch(text: &str) -> Result<Vec<Layer>, String> {
    let layers = text
        .split_whitespace()
        .enumerate()
        .map(|(i, t)| parse_layer(t).map_err(|e| format!("layer {i} `{t}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if layers.is_empty() {
        return Err("the architecture has no layers".into());
    }
    Ok(layers)
}

/// Parses an input shape `C,H,W` (also accepts `CxHxW`).
pub fn parse_input_shape(text: &str) -> Result<[usize; 3], String> {
    let dims: Vec<usize> = text
        .split([',', 'x'])
        .map(|d| parse_count(d.trim(), "dimension"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("input shape `{text}`: {e}"))?;
    match dims[..] {
        [c, h, w] => Ok([c, h, w]),
        _ => Err(format!(
            "input shape `{text}` must have three dimensions C,H,W"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_round_trips() {
        let text = "conv(1,16,3,p1) relu maxpool2 conv(16,32,3x5,s2,p1x2,nobias) avgpool(3,s2,p1) \
                    avgpool2 maxpool(3,s1) flatten linear(1568,64) relu linear(64,10,nobias)";
        let layers = parse_arch(text).unwrap();
        assert_eq!(format_arch(&layers), text);
        assert_eq!(parse_arch(&format_arch(&layers)).unwrap(), layers);
    }

    #[test]
    fn shapes_follow_pytorch() {
        let layers = parse_arch("conv(3,8,3,s2,p1) maxpool(3,s2,p1) avgpool2 flatten").unwrap();
        let mut s = Shape::Chw([3, 17, 30]);
        for l in &layers {
            s = l.output_shape(s).unwrap();
        }
        // conv: (17+2-3)/2+1 = 9, (30+2-3)/2+1 = 15; maxpool: 5, 8; avgpool: 2, 4
        assert_eq!(s, Shape::Flat(8 * 2 * 4));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse_arch("conv(1,16,3) relu foo").unwrap_err();
        assert!(e.contains("layer 2 `foo`"), "{e}");
        let e = parse_arch("conv(1,16,0)").unwrap_err();
        assert!(e.contains("kernel size"), "{e}");
        let e = parse_arch("maxpool(2,p2)").unwrap_err();
        assert!(e.contains("half the kernel"), "{e}");
        let e = Layer::Linear(Linear {
            in_features: 5,
            out_features: 2,
            bias: true,
        })
        .output_shape(Shape::Chw([1, 2, 2]))
        .unwrap_err();
        assert!(e.contains("flatten"), "{e}");
        assert!(parse_input_shape("1,28").is_err());
        assert_eq!(parse_input_shape("3x32x30").unwrap(), [3, 32, 30]);
    }
}
