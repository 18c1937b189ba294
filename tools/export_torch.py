"""Write a PyTorch nn.Sequential CNN as a gig model file, and read one back.

    from export_torch import export, load
    export(model, "model.safetensors", input_shape=(1, 28, 28))
    model = load("model.safetensors")          # an nn.Sequential with the same state_dict

The file is the model's state_dict as safetensors (names `0.weight`, `3.bias`, ...; OIHW conv weights,
[out, in] linear weights) with two metadata entries: `gig.arch`, the layer list in gig's grammar
(README.md), and `gig.input_shape`, "C,H,W". Layers other than Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten
and Linear, or options gig does not implement (dilation, groups, ceil_mode, ...), raise ValueError.
"""

import re

import torch
from safetensors.torch import load_file, save_file
from torch import nn

ARCH_KEY = "gig.arch"
INPUT_SHAPE_KEY = "gig.input_shape"


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _fmt(p):
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _window(name, layer, i):
    k = _pair(layer.kernel_size)
    s = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
    p = _pair(layer.padding)
    if k[0] == k[1] and s == k and p == (0, 0):
        return f"{name}{k[0]}"
    text = f"{name}({_fmt(k)}"
    if s != k:
        text += f",s{_fmt(s)}"
    if p != (0, 0):
        text += f",p{_fmt(p)}"
    return text + ")"


def _unsupported(i, layer, why):
    raise ValueError(f"layer {i} ({layer}) is not supported by gig: {why}")


def arch_of(model: nn.Sequential) -> str:
    """The layer list of `model` in gig's grammar."""
    parts = []
    for i, layer in enumerate(model):
        if isinstance(layer, nn.Conv2d):
            if _pair(layer.dilation) != (1, 1):
                _unsupported(i, layer, "dilation must be 1")
            if layer.groups != 1:
                _unsupported(i, layer, "groups must be 1")
            if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                _unsupported(i, layer, "padding must be explicit zeros")
            text = f"conv({layer.in_channels},{layer.out_channels},{_fmt(_pair(layer.kernel_size))}"
            if _pair(layer.stride) != (1, 1):
                text += f",s{_fmt(_pair(layer.stride))}"
            if _pair(layer.padding) != (0, 0):
                text += f",p{_fmt(_pair(layer.padding))}"
            if layer.bias is None:
                text += ",nobias"
            parts.append(text + ")")
        elif isinstance(layer, nn.ReLU):
            parts.append("relu")
        elif isinstance(layer, nn.MaxPool2d):
            if _pair(layer.dilation) != (1, 1) or layer.ceil_mode or layer.return_indices:
                _unsupported(i, layer, "dilation, ceil_mode and return_indices are not implemented")
            parts.append(_window("maxpool", layer, i))
        elif isinstance(layer, nn.AvgPool2d):
            if layer.ceil_mode or not layer.count_include_pad or layer.divisor_override is not None:
                _unsupported(i, layer, "only ceil_mode=False, count_include_pad=True, no divisor_override")
            parts.append(_window("avgpool", layer, i))
        elif isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                _unsupported(i, layer, "only Flatten(start_dim=1, end_dim=-1)")
            parts.append("flatten")
        elif isinstance(layer, nn.Linear):
            text = f"linear({layer.in_features},{layer.out_features}"
            parts.append(text + (",nobias)" if layer.bias is None else ")"))
        else:
            _unsupported(i, layer, "gig knows Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten and Linear")
    return " ".join(parts)


def export(model: nn.Sequential, path, input_shape=(1, 28, 28)):
    """Write `model` (an nn.Sequential of supported layers) to `path` as a gig .safetensors model."""
    if not isinstance(model, nn.Sequential):
        raise ValueError("gig exports nn.Sequential models")
    arch = arch_of(model)
    c, h, w = (int(d) for d in input_shape)
    with torch.no_grad():  # the shapes must chain, and the output must be a vector of logits
        out = model.to("cpu").float()(torch.zeros(1, c, h, w))
    if out.dim() != 2:
        raise ValueError(f"the model's output has shape {tuple(out.shape)}; gig needs [N, classes]")
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={ARCH_KEY: arch, INPUT_SHAPE_KEY: f"{c},{h},{w}", "format": "pt"})


def _args(text):
    return [a.strip() for a in text.split(",")] if text else []


def _dims(text):
    a, _, b = text.partition("x")
    return (int(a), int(b or a))


def build(arch: str) -> nn.Sequential:
    """An nn.Sequential from a layer list in gig's grammar (weights initialised by PyTorch)."""
    layers = []
    for token in arch.split():
        m = re.fullmatch(r"([a-z]+?)(\d*)(?:\((.*)\))?", token)
        if not m:
            raise ValueError(f"cannot parse layer `{token}`")
        name, suffix, args = m.group(1), m.group(2), _args(m.group(3))
        opts = {a[0]: _dims(a[1:]) for a in args if a[:1] in "sp" and a[1:2].isdigit()}
        bias = "nobias" not in args
        if name == "conv":
            layers.append(nn.Conv2d(int(args[0]), int(args[1]), _dims(args[2]), stride=opts.get("s", 1),
                                    padding=opts.get("p", 0), bias=bias))
        elif name in ("maxpool", "avgpool"):
            k = _dims(suffix or args[0])
            cls = nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d
            layers.append(cls(k, stride=opts.get("s", k), padding=opts.get("p", 0)))
        elif name == "relu":
            layers.append(nn.ReLU())
        elif name == "flatten":
            layers.append(nn.Flatten())
        elif name == "linear":
            layers.append(nn.Linear(int(args[0]), int(args[1]), bias=bias))
        else:
            raise ValueError(f"unknown layer `{token}`")
    return nn.Sequential(*layers)


def load(path):
    """Read a gig model file back into an nn.Sequential; returns (model, input_shape)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    model = build(meta[ARCH_KEY])
    model.load_state_dict(load_file(str(path)))
    shape = tuple(int(d) for d in meta[INPUT_SHAPE_KEY].split(","))
    return model, shape
