"""The "batched" strategy: a whole population through an ``nn.Sequential`` layer by layer.

The model is compiled once into steps. Parameter-free layers before the first layer with
parameters run ONCE on the shared input. That first layer sees the same input for every
candidate, so a Linear there is one GEMM of the batch against all candidates' weights, and a
Conv2d one convolution with the candidates' kernels stacked on the output-channel axis.
Later layers act per candidate: Linear as ``bmm`` over candidates in a feature-major layout
``[c, features, B]`` (``W[c, out, in] @ h[c, in, B]``; the weights are strided views of the
flat rows, the outputs reused buffers, the bias added with the ReLU after it in one pass),
Conv2d as one grouped convolution (``groups=c``) on ``[B, c*C, H, W]``. Flatten turns the
image layout into per-candidate vectors in ``nn.Flatten``'s order. A max-pool runs before
the monotone activation that precedes it (the same values, on a quarter of them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Layouts of the running activation h.
SHARED = "shared"  # [B, ...]: the input, the same for every candidate
IMAGE = "image"  # [B, c*C, H, W]: candidate j's channels at j*C:(j+1)*C
FEATURES = "features"  # [c, F, B]: one feature-major matrix per candidate

ELEMENTWISE_INPLACE: dict[type, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    nn.ReLU: lambda m, h: h.relu_(),
    nn.Tanh: lambda m, h: h.tanh_(),
    nn.Sigmoid: lambda m, h: h.sigmoid_(),
    nn.LeakyReLU: lambda m, h: F.leaky_relu_(h, m.negative_slope),
    nn.ELU: lambda m, h: F.elu_(h, m.alpha),
    nn.Hardtanh: lambda m, h: F.hardtanh_(h, m.min_val, m.max_val),  # and ReLU6
}
ELEMENTWISE = (
    nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.Softsign, nn.SELU, nn.CELU, nn.Hardswish,
    nn.Hardsigmoid, nn.Tanhshrink, nn.Identity,
)
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)
POOL = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


# h += bias; h.relu_() in one pass over h (the CPU kernel torch's JIT fuses them into)
_ADD_RELU = getattr(torch.ops.aten, "_add_relu_", None)


class Unsupported(Exception):
    """The model holds a layer the batched strategy cannot run; the message says which."""


@dataclass
class Step:
    kind: str  # "linear", "conv", "act", "pool", "flatten"
    module: nn.Module
    weight: tuple[int, int] | None = None  # [start, stop) of the weight in a flat row
    bias: tuple[int, int] | None = None
    relu: bool = False  # a Linear's bias add and the ReLU after it in one pass


def _leaves(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [leaf for child in model for leaf in _leaves(child)]
    return [model]


def _offsets(model: nn.Module) -> dict[int, tuple[int, int]]:
    offsets, start = {}, 0
    for p in model.parameters():
        offsets[id(p)] = (start, start + p.numel())
        start += p.numel()
    return offsets


class BatchedPlan:
    """Steps of a supported ``nn.Sequential``; ``Unsupported`` if the model is not one."""

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Sequential):
            raise Unsupported(f"{type(model).__name__} is not an nn.Sequential")
        offsets = _offsets(model)
        self.prefix: list[nn.Module] = []  # parameter-free layers run once on the shared input
        self.steps: list[Step] = []
        layout = SHARED
        for module in _leaves(model):
            step = self._step(module, offsets, layout)
            if step is None:
                continue
            if step.kind in ("linear", "conv"):
                layout = IMAGE if step.kind == "conv" else FEATURES
            elif step.kind == "flatten" and layout == IMAGE:
                layout = FEATURES
            if layout == SHARED:
                self.prefix.append(module)
            else:
                self.steps.append(step)
        if layout != FEATURES:
            raise Unsupported("the model must end in per-candidate outputs [B, features]")
        self.steps = _fuse_bias_relu(_pool_before_activation(self.steps))
        if len(offsets) != sum((s.weight is not None) + (s.bias is not None) for s in self.steps):
            raise Unsupported("the model has parameters outside Linear and Conv2d layers")

    @staticmethod
    def _step(module: nn.Module, offsets: dict, layout: str) -> Step | None:
        name = type(module).__name__

        def span(p: nn.Parameter | None) -> tuple[int, int] | None:
            return None if p is None else offsets[id(p)]

        if type(module) is nn.Linear:
            if layout == IMAGE:
                raise Unsupported("Linear on an image (no Flatten before it)")
            return Step("linear", module, span(module.weight), span(module.bias))
        if type(module) is nn.Conv2d:
            if module.groups != 1 or module.padding_mode != "zeros":
                raise Unsupported(f"{module} (groups or padding_mode)")
            if layout == FEATURES:
                raise Unsupported("Conv2d after Flatten or Linear")
            return Step("conv", module, span(module.weight), span(module.bias))
        if any(True for _ in module.parameters(recurse=False)) or list(module.children()):
            raise Unsupported(f"{name} is not supported")
        if _inplace(module) is not None or isinstance(module, ELEMENTWISE):
            return Step("act", module)
        if isinstance(module, DROPOUT):
            return None  # identity in evaluation
        if isinstance(module, POOL):
            if layout == FEATURES or getattr(module, "return_indices", False):
                raise Unsupported(f"{name} on vectors or with return_indices")
            return Step("pool", module)
        if type(module) is nn.Flatten:
            if module.start_dim != 1 or module.end_dim != -1:
                raise Unsupported("Flatten other than Flatten(1, -1)")
            return Step("flatten", module)
        raise Unsupported(f"{name} is not supported")

    # ----------------------------------------------------------------- running
    def shared_input(self, inputs: torch.Tensor) -> torch.Tensor:
        """The parameter-free prefix, once for all candidates (never in place on ``inputs``)."""
        h = inputs
        for module in self.prefix:
            if isinstance(module, nn.Flatten):
                h = h.flatten(1)
            elif getattr(module, "inplace", False):
                h = module(h.clone())
            else:
                h = module(h)
        return h

    def outputs(
        self, rows: torch.Tensor, shared: torch.Tensor, workspace: dict | None = None
    ) -> torch.Tensor:
        """Outputs ``[c, features, B]`` of candidates ``rows [c, d]`` on ``shared`` (the prefix's).

        Linear layers write into buffers kept in ``workspace`` (pass the same dict for every
        tile of a call): fresh multi-MB tensors per layer cost page faults that, on a CPU,
        were measured to slow a bmm by a quarter.
        """
        c, batch = rows.shape[0], shared.shape[0]
        workspace = {} if workspace is None else workspace
        h, layout = shared, SHARED
        for index, step in enumerate(self.steps):
            m = step.module
            if step.kind == "linear":
                weight = rows[:, step.weight[0]:step.weight[1]].unflatten(
                    1, (m.out_features, m.in_features)
                )
                out = _buffer(workspace, index, (c, m.out_features, batch), rows)
                if layout == SHARED:  # one GEMM for all candidates: [c*out, in] @ [in, B]
                    if h.dim() != 2:
                        raise Unsupported("Linear on an input that is not [B, features]")
                    h = torch.bmm(weight, h.t().expand(c, -1, -1), out=out)
                else:  # W[c, out, in] @ h[c, in, B]
                    h = torch.bmm(weight, h, out=out)
                if step.bias is not None:
                    bias = rows[:, step.bias[0]:step.bias[1]].unsqueeze(2)
                    if step.relu:
                        _add_relu_(h, bias)
                    else:
                        h.add_(bias)
                layout = FEATURES
            elif step.kind == "conv":
                weight = rows[:, step.weight[0]:step.weight[1]].reshape(
                    c * m.out_channels, *m.weight.shape[1:]
                )
                bias = None if step.bias is None else rows[:, step.bias[0]:step.bias[1]].reshape(-1)
                groups = 1 if layout == SHARED else c
                h = F.conv2d(h, weight, bias, m.stride, m.padding, m.dilation, groups)
                layout = IMAGE
            elif step.kind == "act":
                act = _inplace(m)
                h = act(m, h) if act is not None else m(h)
            elif step.kind == "pool":
                h = max_pool(h, m) if _plain_max_pool(m) else m(h)
            elif layout == IMAGE:  # flatten: [B, c*C, H, W] -> [c, C*H*W, B]
                h = h.reshape(batch, c, -1).permute(1, 2, 0)
                layout = FEATURES
        return h


def _inplace(module: nn.Module):
    """The in-place form of an elementwise activation (ReLU6 is a Hardtanh), or None."""
    for cls in type(module).__mro__:
        if cls in ELEMENTWISE_INPLACE:
            return ELEMENTWISE_INPLACE[cls]
    return None


def _add_relu_(h: torch.Tensor, bias: torch.Tensor) -> None:
    """h = relu(h + bias) in place; one pass with torch's fused kernel (CPU, float32)."""
    if _ADD_RELU is not None and h.device.type == "cpu" and h.dtype == torch.float32:
        _ADD_RELU(h, bias)
    else:
        h.add_(bias).relu_()


def _plain_max_pool(module: nn.Module) -> bool:
    return (
        type(module) is nn.MaxPool2d and module.padding in (0, (0, 0))
        and module.dilation in (1, (1, 1)) and not module.ceil_mode
    )


def max_pool(h: torch.Tensor, module: nn.MaxPool2d) -> torch.Tensor:
    """``MaxPool2d`` without padding, dilation or ceil mode, as maxima of strided slices.

    The same values (a maximum is exact, NaN propagates), several times faster than
    ``F.max_pool2d`` on a CPU, which also computes the argmax indices.
    """
    kh, kw = _pair(module.kernel_size)
    sh, sw = _pair(module.stride if module.stride is not None else module.kernel_size)
    out_h, out_w = (h.shape[-2] - kh) // sh + 1, (h.shape[-1] - kw) // sw + 1
    rows = h[..., 0:sh * (out_h - 1) + 1:sh, :]
    for i in range(1, kh):
        rows = torch.maximum(rows, h[..., i:i + sh * (out_h - 1) + 1:sh, :])
    out = rows[..., 0:sw * (out_w - 1) + 1:sw]
    for j in range(1, kw):
        out = torch.maximum(out, rows[..., j:j + sw * (out_w - 1) + 1:sw])
    return out


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _pool_before_activation(steps: list[Step]) -> list[Step]:
    """Swap a monotone activation followed by a max-pool: the same values, on 1/4 of them.

    f(max(a, b)) = max(f(a), f(b)) exactly for non-decreasing f.
    """
    steps = list(steps)
    for i in range(len(steps) - 1):
        act, pool = steps[i], steps[i + 1]
        if act.kind == "act" and _monotone(act.module) and pool.kind == "pool" and isinstance(
            pool.module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)
        ):
            steps[i], steps[i + 1] = pool, act
    return steps


def _fuse_bias_relu(steps: list[Step]) -> list[Step]:
    """Mark a Linear with a bias followed by a ReLU to add the bias and clamp in one pass."""
    fused: list[Step] = []
    for step in steps:
        previous = fused[-1] if fused else None
        if (
            step.kind == "act" and type(step.module) is nn.ReLU and previous is not None
            and previous.kind == "linear" and previous.bias is not None and not previous.relu
        ):
            previous.relu = True
            continue
        fused.append(step)
    return fused


def _monotone(module: nn.Module) -> bool:
    if isinstance(module, nn.LeakyReLU):
        return module.negative_slope >= 0
    return isinstance(module, (nn.ReLU, nn.Hardtanh, nn.Tanh, nn.Sigmoid, nn.Identity))


def _buffer(workspace: dict, key: int, shape: tuple[int, ...], like: torch.Tensor):
    """A ``shape`` tensor from ``workspace`` (a prefix of a larger one when c is smaller)."""
    buffer = workspace.get(key)
    if buffer is None or buffer.shape[1:] != shape[1:] or buffer.shape[0] < shape[0]:
        buffer = torch.empty(shape, dtype=like.dtype, device=like.device)
        workspace[key] = buffer
    return buffer[: shape[0]]


def activation_numel(model: nn.Module, sample: torch.Tensor) -> int:
    """Numbers of activations one sample produces in all leaf layers (a memory estimate)."""
    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output[:1].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        model(sample[:1].clone())  # a layer may work in place
    finally:
        for hook in hooks:
            hook.remove()
    return total
