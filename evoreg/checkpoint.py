"""Files of a run directory: atomic writes (a kill -9 in the middle of a write leaves the
previous file intact) and the lock that keeps a directory to one writer."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import warnings
from pathlib import Path
from typing import Any

import torch

from . import statecodec
from .errors import EvoregError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto it.

    ``os.replace`` is atomic on POSIX, so readers see the old file or the new one, never a
    half-written one. The temporary is created like any file (mode 0666 less the umask), so
    a run directory can be shared as the user's umask allows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
        fsync_directory(path.parent)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def fsync_directory(directory: str | os.PathLike) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


# --------------------------------------------------------------------------- checkpoints
# A checkpoint is one file:
#   b"EVOREG-CHECKPOINT 1\n"
#   sha256 of the body, hex, b"\n"      integrity: torch's zip files do not check their CRC
#   HMAC-SHA256 of that digest with this user's key, hex (or "-"), b"\n"
#   body = length of the manifest, b"\n", the manifest (JSON), the blobs it points into
# The manifest holds the state as a JSON tree (see evoreg.statecodec) and each blob's place.
# Loading parses JSON and copies bytes into tensors: nothing in the file is executed, except
# pickles (nevergrad's optimizers), which are unpickled only when the signature is this
# user's or the user passed trust=True (--trust-checkpoint).
MAGIC = b"EVOREG-CHECKPOINT 1\n"
HEADER_BYTES = len(MAGIC) + 65 + 65  # magic, digest line, signature line
ALIGN = 64
KEY_FILE = "checkpoint-key"
TRUST_HINT = (
    "loading it could run arbitrary code; if you trust whoever made it, pass "
    "--trust-checkpoint (Python: trust_checkpoint=True)"
)


def config_dir() -> Path:
    """Where evoreg keeps this user's files: $EVOREG_CONFIG_DIR, else
    $XDG_CONFIG_HOME/evoreg, else ~/.config/evoreg."""
    if os.environ.get("EVOREG_CONFIG_DIR"):
        return Path(os.environ["EVOREG_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "evoreg"


def user_key(create: bool = True) -> bytes | None:
    """This user's secret signing key (32 random bytes, mode 0600), made on first use;
    None when it does not exist and cannot be made (a read-only home)."""
    path = config_dir() / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        if not create:
            return None
    except ValueError:
        raise EvoregError(f"{path} is not an evoreg key; remove it to make a new one") from None
    except OSError:  # unreadable (a file where the folder should be, permissions)
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return user_key(create=False)
    except OSError:
        return None
    with os.fdopen(handle, "w") as key_file:
        key_file.write(secrets.token_hex(32) + "\n")
    return user_key(create=False)


def _signature(digest: bytes, key: bytes | None) -> bytes:
    if key is None:
        return b"-" * 64  # unsigned; the same length keeps the blobs aligned
    return hmac.new(key, digest, hashlib.sha256).hexdigest().encode()


def dumps(state: Any) -> bytes:
    """``state`` as the bytes of a checkpoint file (``loads`` reads them back)."""
    return b"".join(_pieces(state))


def _pieces(state: Any) -> list[bytes | memoryview]:
    """``state`` (snapshotted) as the pieces of a checkpoint file, in order."""
    # state_dict() results are snapshots already (data and Pickled): copying a large
    # population again would only cost time and memory; anything else is snapshotted here.
    data = statecodec.snapshot(state) if statecodec.needs_pickle(state) else state
    tree, blobs = statecodec.encode(data)
    # Each blob starts at a multiple of ALIGN in the file, so a reader can point tensors
    # into the bytes it read instead of copying them (see load_checkpoint).
    places, offset, padded = [], 0, []
    for blob in blobs:
        pad = -offset % ALIGN
        if pad:
            padded.append(bytes(pad))
        offset += pad
        size = memoryview(blob).nbytes
        places.append([offset, size])
        padded.append(blob)
        offset += size
    manifest = json.dumps({"format": 1, "state": tree, "blobs": places}).encode()
    length = len(manifest)
    while (HEADER_BYTES + len(str(length)) + 1 + length) % ALIGN:
        length += 1
    manifest += b" " * (length - len(manifest))  # JSON allows trailing blanks
    body = [str(length).encode() + b"\n", manifest, *padded]
    digest = hashlib.sha256()
    for piece in body:
        digest.update(piece)
    hex_digest = digest.hexdigest().encode()
    # Only pickles need a signature: a data-only checkpoint loads safely from anyone, and a
    # user who never saves one gets no key file.
    pickled = bool(statecodec.pickled_parts(data))
    key = user_key() if pickled else None
    if key is None and pickled:
        warnings.warn(
            f"cannot make the signing key {config_dir() / KEY_FILE} (set EVOREG_CONFIG_DIR to "
            "a writable folder): this checkpoint's pickled state will load only with "
            "--trust-checkpoint", RuntimeWarning, stacklevel=3,
        )
    return [MAGIC, hex_digest + b"\n", _signature(hex_digest, key) + b"\n", *body]


def save_checkpoint(state: Any, path: str | os.PathLike) -> None:
    """Write ``state`` (nested dicts, lists, numbers, strings, tensors, arrays; anything
    else is pickled and signed) to ``path`` atomically."""
    pieces = _pieces(state)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        for piece in pieces:
            handle.write(piece)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    trust: bool = False,
    device: str | torch.device | None = None,
) -> Any:
    """The state saved at ``path``, checked against its checksum.

    Pickled parts are loaded only when the file is signed with this user's key or
    ``trust`` is true; otherwise one line says why it is refused. Tensors saved from an
    accelerator go to ``device`` (default: the CPU).
    """
    path = Path(path)
    try:
        # Read into a writable buffer: tensors then use its bytes in place (one copy of a
        # large population in memory, not two).
        data = bytearray(path.stat().st_size)
        with open(path, "rb") as handle:
            if handle.readinto(data) != len(data):
                raise EvoregError(f"{path} changed while it was read")
    except FileNotFoundError:
        raise EvoregError(f"no checkpoint at {path}") from None
    except IsADirectoryError:
        raise EvoregError(f"{path} is a directory, not a checkpoint") from None
    return loads(data, trust=trust, device=device, where=str(path))


def loads(
    data: bytes | bytearray,
    *,
    trust: bool = False,
    device: str | torch.device | None = None,
    where: str = "checkpoint",
) -> Any:
    """``load_checkpoint`` for the bytes of a checkpoint file."""
    if data.startswith(b"PK\x03\x04"):
        raise EvoregError(
            f"{where} was written by an earlier evoreg with torch.save, which can hold code; "
            "this evoreg does not load it: start the run again, or finish it with the evoreg "
            "that wrote it"
        )
    if not data.startswith(MAGIC):
        raise EvoregError(f"{where} is not an evoreg checkpoint (damaged or another file)")
    view = memoryview(data)
    try:
        rest = data.index(b"\n", len(MAGIC))
        hex_digest = bytes(view[len(MAGIC):rest])
        end_signature = data.index(b"\n", rest + 1)
        signature = bytes(view[rest + 1:end_signature])
        body = view[end_signature + 1:]
    except ValueError:
        raise EvoregError(f"{where} is damaged (its header is cut short)") from None
    if not hmac.compare_digest(hashlib.sha256(body).hexdigest().encode(), hex_digest):
        raise EvoregError(
            f"{where} is damaged (its checksum does not match its contents); restore it from "
            "a copy or start the run again"
        )
    try:
        newline = bytes(body[:32]).index(b"\n")
        length = int(bytes(body[:newline]))
        manifest = json.loads(bytes(body[newline + 1:newline + 1 + length]))
        start = newline + 1 + length
        blobs = [body[start + offset:start + offset + size]
                 for offset, size in manifest["blobs"]]
        tree = manifest["state"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise EvoregError(f"{where} is damaged (its manifest cannot be read)") from None
    key = user_key(create=False)
    signed = key is not None and hmac.compare_digest(_signature(hex_digest, key), signature)
    state = statecodec.decode(tree, blobs, trusted=signed or trust,
                              device=None if device is None else torch.device(device))
    unsigned = [part.what or "an object" for part in statecodec.pickled_parts(state)
                if not part.trusted]
    if unsigned:
        raise statecodec.UntrustedState(
            f"{where} holds pickled state ({', '.join(unsigned[:3])}) that was not saved by "
            f"this user (no signature from {config_dir() / KEY_FILE}); {TRUST_HINT}"
        )
    return state


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
