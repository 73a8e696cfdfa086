"""Files of a run directory: atomic writes (a kill -9 in the middle of a write leaves the
previous file intact) and the lock that keeps a directory to one writer."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import EvoregError

LOCK_FILE = ".lock"


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


@contextlib.contextmanager
def exclusive_lock(directory: str | os.PathLike, what: str = "run"):
    """Hold ``directory``'s lock file for the block: one writer per run or bench directory.

    A second process is refused at once (exit 2 from the CLI) instead of interleaving its
    generations with the first one's. ``flock`` is released by the kernel when the holder
    dies, so a killed run never leaves a stale lock; the file itself stays (removing it
    would let two processes lock two different files).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise EvoregError(
                f"{directory} is in use by another evoreg {what} ({holder}); wait for it to "
                "finish or use another directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()
