"""Device selection: ``"auto"`` picks CUDA when present, so code runs unchanged on CPU."""

from __future__ import annotations

import torch

from .errors import EvoregError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise EvoregError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EvoregError(f"device {device!r} asked for, but CUDA is not available; use 'cpu'")
    return resolved
