"""Flat parameter vectors <-> a module's parameters, and Glorot-uniform initialisation.

A candidate is one float32 vector ``[d]``: the module's parameters in the order of
``model.parameters()``, each flattened row-major (as ``torch.nn.utils.parameters_to_vector``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from evoreg.errors import EvoregError


def parameter_count(model: nn.Module) -> int:
    """d: the number of weights of ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def flatten_parameters(model: nn.Module) -> torch.Tensor:
    """The parameters of ``model`` as one detached float32 vector ``[d]`` on its device."""
    params = [p.detach().reshape(-1).float() for p in model.parameters()]
    if not params:
        return torch.zeros(0)
    return torch.cat(params)


def _check_length(model: nn.Module, flat: torch.Tensor) -> int:
    d = parameter_count(model)
    if flat.dim() < 1 or flat.shape[-1] != d:
        raise EvoregError(
            f"a flat parameter vector of this model has {d:,} values; got shape "
            f"{tuple(flat.shape)}"
        )
    return d


def load_flat_parameters_(model: nn.Module, flat: torch.Tensor) -> nn.Module:
    """Copy the vector ``flat [d]`` into the parameters of ``model``, in place."""
    _check_length(model, flat)
    if flat.dim() != 1:
        raise EvoregError(f"expected one vector [d], got shape {tuple(flat.shape)}")
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            k = p.numel()
            p.copy_(flat[offset:offset + k].view_as(p))
            offset += k
    return model


def unflatten_parameters(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Parameter name -> view of ``flat[..., slice]`` shaped ``(*flat.shape[:-1], *param.shape)``.

    For ``torch.func.functional_call`` (a vector ``[d]``) or ``vmap`` of it (rows ``[n, d]``).
    The values are views, so gradients flow back to ``flat``.
    """
    _check_length(model, flat)
    lead = flat.shape[:-1]
    params: dict[str, torch.Tensor] = {}
    offset = 0
    for name, p in model.named_parameters():
        k = p.numel()
        params[name] = flat[..., offset:offset + k].reshape(*lead, *p.shape)
        offset += k
    return params


# --------------------------------------------------------------------------- Glorot
def _glorot_bound(weight: torch.Tensor) -> float:
    """a = sqrt(6 / (fan_in + fan_out)); conv fans include the receptive field (Keras, gpuea).

    fan_in + fan_out = (size(0) + size(1)) * receptive field, whichever of the two axes
    holds the input channels, so the bound is the same for convolutions and transposed ones.
    """
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    fans = (weight.shape[0] + weight.shape[1]) * receptive
    return math.sqrt(6.0 / fans)


def _glorot_roles(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> "weight" or "bias" for every Linear and convolution."""
    roles: dict[int, str] = {}
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            roles[id(module.weight)] = "weight"
            if module.bias is not None:
                roles[id(module.bias)] = "bias"
    return roles


def glorot_uniform_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Every Linear / Conv weight ~ U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), biases 0.

    Keras/TensorFlow's ``glorot_uniform``, as in jprellberg/gpuea (Prellberg 2020, ch. 5).
    Other parameters are left as they are. Values are drawn on ``generator``'s device.
    """
    roles = _glorot_roles(model)
    device = generator.device if generator is not None else torch.device("cpu")
    with torch.no_grad():
        for p in model.parameters():
            role = roles.get(id(p))
            if role == "weight":
                a = _glorot_bound(p)
                draw = torch.rand(p.shape, generator=generator, device=device)
                p.copy_(draw.mul_(2 * a).sub_(a))
            elif role == "bias":
                p.zero_()
    return model


def glorot_uniform_population(
    model: nn.Module, n: int, generator: torch.Generator
) -> torch.Tensor:
    """``[n, d]``: n independent Glorot-uniform draws of ``model``'s weights, biases zero.

    One random draw per parameter tensor for all n rows (no loop over candidates).
    Parameters of other layers keep the model's current values in every row.
    """
    roles = _glorot_roles(model)
    device = generator.device
    columns = []
    for p in model.parameters():
        role, k = roles.get(id(p)), p.numel()
        if role == "weight":
            a = _glorot_bound(p)
            columns.append(torch.rand(n, k, generator=generator, device=device).mul_(2 * a).sub_(a))
        elif role == "bias":
            columns.append(torch.zeros(n, k, device=device))
        else:
            current = p.detach().reshape(1, k).float().to(device)
            columns.append(current.expand(n, k))
    if not columns:
        return torch.zeros(n, 0, device=device)
    return torch.cat(columns, dim=1)
