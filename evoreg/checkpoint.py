"""Atomic files: a kill -9 in the middle of a write leaves the previous file intact."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto it.

    ``os.replace`` is atomic on POSIX, so readers see the old file or the new one, never a
    half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    with atomic_path(path) as temporary:
        # Protocol 4: torch's default (2) cannot hold an object over 4 GiB, and nevergrad's
        # state over a 1.7M-weight Atari agent (its archive of candidates) grows past that.
        torch.save(state, temporary, pickle_protocol=4)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    # Checkpoints hold optimizer states (numpy RNG states, nevergrad objects): not weights-only.
    return torch.load(path, map_location="cpu", weights_only=False)


def write_json(data: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() <= 64 else f"<tensor {tuple(value.shape)}>"
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return repr(value)
