"""Saved states as data: tensors, arrays and JSON values, read back without running code.

``snapshot(value)`` copies an optimizer's or problem's state into plain data (nested dicts,
lists, tuples, sets, numbers, strings, bytes, tensors, numpy arrays). An object that only
pickle can hold (a nevergrad optimizer) becomes a ``Pickled`` blob; ``revive`` unpickles it
only when the blob is trusted: made in this process, or read from a checkpoint whose
signature is this user's (see :mod:`evoreg.checkpoint`), or one the user said to trust.

``encode(data)`` turns a snapshot into a JSON tree plus a list of byte blobs and
``decode(tree, blobs)`` reverses it; both keep shared references (one tensor held by two
attributes is one tensor again after a resume), as pickle did.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .errors import EvoregError

_PLAIN = (type(None), bool, int, float, str)


class Pickled:
    """An object only pickle can hold, kept as its pickle; ``trusted`` says it may be loaded."""

    __slots__ = ("data", "trusted", "what")

    def __init__(self, data: bytes, *, trusted: bool, what: str = "") -> None:
        self.data, self.trusted, self.what = data, trusted, what

    def load(self) -> Any:
        if not self.trusted:
            raise EvoregError(
                f"refusing to unpickle {self.what or 'a saved object'} that nobody trusted: "
                "unpickling can run arbitrary code"
            )
        return pickle.loads(self.data)  # noqa: S301 - trusted: made here or signed by this user

    def __repr__(self) -> str:
        return f"Pickled({self.what or 'object'}, {len(self.data)} bytes)"


class UntrustedState(EvoregError):
    """A saved state holds pickles that were not made by this user."""


# --------------------------------------------------------------------------- snapshots
def snapshot(value: Any, name: str = "state") -> Any:
    """A copy of ``value`` as data: later changes to ``value`` do not reach it.

    Anything that is not a container, number, string, tensor or numpy array is pickled;
    an error names the attribute (``name``) that cannot be.
    """
    return _copy(value, _snapshot_leaf, name, {})


def _copy(value: Any, leaf: Callable[[Any, str], Any], name: str, memo: dict[int, Any]) -> Any:
    """``value`` with its containers rebuilt and everything else replaced by ``leaf(value,
    name)``; an object reached twice is copied once (``memo``), so shared references stay
    shared."""
    if type(value) in _PLAIN:
        return value
    key = id(value)
    if key in memo:
        return memo[key]
    kind = type(value)
    if kind is dict:
        copied: Any = {}
        memo[key] = copied
        for k, v in value.items():
            copied[_copy(k, leaf, name, memo)] = _copy(v, leaf, f"{name}[{k!r}]", memo)
        return copied
    if kind is list:
        copied = []
        memo[key] = copied
        copied.extend(_copy(v, leaf, f"{name}[{i}]", memo) for i, v in enumerate(value))
        return copied
    if kind in (tuple, set, frozenset):
        copied = kind(_copy(v, leaf, name, memo) for v in value)
    else:
        copied = leaf(value, name)
    memo[key] = copied
    return copied


def _snapshot_leaf(value: Any, name: str) -> Any:
    kind = type(value)
    if isinstance(value, torch.Tensor) and kind in (torch.Tensor, torch.nn.Parameter):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if kind is np.ndarray and value.dtype != object:
        return value.copy()
    if isinstance(value, (np.generic, torch.dtype, torch.device, bytes, Pickled)):
        return value
    return Pickled(_pickle(value, name), trusted=True, what=f"{name} ({kind.__name__})")


def _pickle(value: Any, name: str) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # noqa: BLE001 - name the attribute, whatever pickle raised
        raise EvoregError(
            f"{name} ({type(value).__name__}) cannot be saved in a checkpoint "
            f"({type(error).__name__}: {error})"
        ) from None


def needs_pickle(value: Any) -> bool:
    """Whether ``snapshot(value)`` would pickle something."""
    found = []
    _walk(value, lambda v: found.append(v) if not _is_data(v) else None, set())
    return bool(found)


def _is_data(value: Any) -> bool:
    kind = type(value)
    if kind in (dict, list, tuple, set, frozenset, bytes, torch.dtype, torch.device, Pickled):
        return True
    if kind is np.ndarray:
        return value.dtype != object
    return isinstance(value, (np.generic, torch.Tensor)) or (
        isinstance(value, _PLAIN) and kind in _PLAIN
    )


def revive(value: Any) -> Any:
    """A fresh copy of ``value`` with every ``Pickled`` inside unpickled (it must be
    trusted): tensors and arrays are copied, so two objects loaded from one state do not
    share them."""
    return _copy(value, _revive_leaf, "state", {})


def _revive_leaf(value: Any, name: str) -> Any:
    if type(value) is Pickled:
        return value.load()
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if type(value) is np.ndarray:
        return value.copy()
    return value


def pickled_parts(value: Any) -> list[Pickled]:
    """The ``Pickled`` blobs inside ``value``."""
    found: list[Pickled] = []
    _walk(value, lambda v: found.append(v) if type(v) is Pickled else None, set())
    return found


def _walk(value: Any, visit: Callable[[Any], None], seen: set[int]) -> None:
    if isinstance(value, _PLAIN) or id(value) in seen:
        return
    seen.add(id(value))
    visit(value)
    if type(value) is dict:
        for k, v in value.items():
            _walk(k, visit, seen)
            _walk(v, visit, seen)
    elif type(value) in (list, tuple, set, frozenset):
        for v in value:
            _walk(v, visit, seen)


# --------------------------------------------------------------------------- encoding
# Every non-JSON value is a one-key marker object, so a saved dict never needs escaping:
# dicts themselves are markers ({"D": [[key, value], ...]}) and keys may be any value.
def encode(value: Any) -> tuple[Any, list[bytes | memoryview]]:
    """A JSON-able tree and the byte blobs it refers to (tensor and array contents)."""
    blobs: list[bytes | memoryview] = []
    tree = _encode(value, blobs, {}, [0])
    return tree, blobs


def _encode(value: Any, blobs: list, memo: dict[int, int], counter: list[int]) -> Any:
    if isinstance(value, _PLAIN) and type(value) in _PLAIN:
        return value
    if id(value) in memo:
        return {"ref": memo[id(value)]}
    memo[id(value)] = counter[0]
    counter[0] += 1
    kind = type(value)
    if kind is dict:
        return {"D": [[_encode(k, blobs, memo, counter), _encode(v, blobs, memo, counter)]
                      for k, v in value.items()]}
    if kind is list:
        return {"L": [_encode(v, blobs, memo, counter) for v in value]}
    if kind in (tuple, set, frozenset):
        tag = {tuple: "T", set: "S", frozenset: "F"}[kind]
        return {tag: [_encode(v, blobs, memo, counter) for v in value]}
    if isinstance(value, torch.Tensor):
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        blobs.append(memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else b"")
        node = {"tensor": len(blobs) - 1, "dtype": str(value.dtype).removeprefix("torch."),
                "shape": list(value.shape), "device": value.device.type}
        if value.requires_grad:  # a leaf a torch.optim optimizer steps (gradient methods)
            node["grad"] = True
        return node
    if kind is np.ndarray:
        if value.dtype == object:
            raise EvoregError("numpy arrays of Python objects cannot be saved as data")
        contiguous = np.ascontiguousarray(value)
        blobs.append(memoryview(contiguous.reshape(-1).view(np.uint8)) if value.size else b"")
        return {"ndarray": len(blobs) - 1, "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return {"npscalar": value.dtype.str, "value": value.item()}
    if kind is bytes:
        blobs.append(value)
        return {"bytes": len(blobs) - 1}
    if kind is torch.dtype:
        return {"torchdtype": str(value).removeprefix("torch.")}
    if kind is torch.device:
        return {"torchdevice": str(value)}
    if kind is Pickled:
        blobs.append(value.data)
        return {"pickle": len(blobs) - 1, "what": value.what}
    raise EvoregError(f"cannot encode {kind.__name__} as data; snapshot() the state first")


def decode(
    tree: Any, blobs: list[memoryview], *, trusted: bool, device: torch.device | None = None
) -> Any:
    """The value ``encode`` was given. Blobs that are pickles come back as ``Pickled``
    marked ``trusted`` (or not); nothing is unpickled here. Tensors saved from an
    accelerator go to ``device`` when it is given (CPU otherwise)."""
    return _Decoder(blobs, trusted, device).decode(tree)


class _Decoder:
    def __init__(self, blobs: list[memoryview], trusted: bool, device: torch.device | None):
        self.blobs, self.trusted, self.device = blobs, trusted, device
        self.seen: list[Any] = []

    def decode(self, node: Any) -> Any:
        if isinstance(node, _PLAIN):
            return node
        if isinstance(node, list) or not isinstance(node, dict) or not 1 <= len(node) <= 5:
            raise _damaged(f"unexpected node {type(node).__name__}")
        if "ref" in node:
            index = node["ref"]
            if not isinstance(index, int) or not 0 <= index < len(self.seen):
                raise _damaged("a reference to nothing")
            return self.seen[index]
        slot = len(self.seen)
        self.seen.append(None)
        if "D" in node:
            value: Any = {}
            self.seen[slot] = value
            for pair in _items(node["D"]):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise _damaged("a dict entry that is not a pair")
                key = self.decode(pair[0])
                try:
                    value[key] = self.decode(pair[1])
                except TypeError:
                    raise _damaged("an unhashable dict key") from None
            return value
        if "L" in node:
            value = []
            self.seen[slot] = value
            value.extend(self.decode(v) for v in _items(node["L"]))
            return value
        for tag, kind in (("T", tuple), ("S", set), ("F", frozenset)):
            if tag in node:
                try:
                    value = kind(self.decode(v) for v in _items(node[tag]))
                except TypeError:
                    raise _damaged("an unhashable set member") from None
                break
        else:
            value = self._leaf(node)
        self.seen[slot] = value
        return value

    def _leaf(self, node: dict) -> Any:
        if "tensor" in node:
            dtype = getattr(torch, str(node.get("dtype")), None)
            if not isinstance(dtype, torch.dtype):
                raise _damaged(f"unknown tensor dtype {node.get('dtype')!r}")
            shape = _shape(node.get("shape"))
            raw = self._blob(node["tensor"])
            if len(raw) == 0:
                tensor = torch.empty(shape, dtype=dtype)
            else:
                tensor = _bytes_as(raw, dtype)
                if tensor.numel() != int(np.prod(shape, dtype=np.int64)):
                    raise _damaged("a tensor whose size does not match its shape")
                tensor = tensor.reshape(shape)
            if node.get("device") not in (None, "cpu") and self.device is not None:
                tensor = tensor.to(self.device)
            return tensor.requires_grad_(bool(node.get("grad", False)))
        if "ndarray" in node:
            try:
                dtype = np.dtype(str(node.get("dtype")))
            except TypeError:
                raise _damaged(f"unknown array dtype {node.get('dtype')!r}") from None
            if dtype.hasobject:
                raise _damaged("an array of Python objects")
            shape = _shape(node.get("shape"))
            raw = self._blob(node["ndarray"])
            array = np.frombuffer(bytes(raw), dtype=dtype) if len(raw) else np.empty(0, dtype)
            if array.size != int(np.prod(shape, dtype=np.int64)):
                raise _damaged("an array whose size does not match its shape")
            return array.reshape(shape).copy()
        if "npscalar" in node:
            try:
                dtype = np.dtype(str(node["npscalar"]))
            except TypeError:
                raise _damaged(f"unknown numpy dtype {node['npscalar']!r}") from None
            if dtype.hasobject:
                raise _damaged("a numpy object scalar")
            return dtype.type(node.get("value"))
        if "bytes" in node:
            return bytes(self._blob(node["bytes"]))
        if "torchdtype" in node:
            dtype = getattr(torch, str(node["torchdtype"]), None)
            if not isinstance(dtype, torch.dtype):
                raise _damaged(f"unknown torch dtype {node['torchdtype']!r}")
            return dtype
        if "torchdevice" in node:
            return torch.device(str(node["torchdevice"]))
        if "pickle" in node:
            return Pickled(bytes(self._blob(node["pickle"])), trusted=self.trusted,
                           what=str(node.get("what", "")))
        raise _damaged(f"unknown node {sorted(node)}")

    def _blob(self, index: Any) -> memoryview:
        if not isinstance(index, int) or not 0 <= index < len(self.blobs):
            raise _damaged("a reference to a missing blob")
        return self.blobs[index]


def _bytes_as(raw: memoryview, dtype: torch.dtype) -> torch.Tensor:
    """A flat tensor of ``dtype`` over ``raw``: in place when the buffer is writable and
    aligned (a checkpoint read by load_checkpoint), else over a copy."""
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if len(raw) % itemsize:
        raise _damaged("a tensor whose bytes do not fill its elements")
    if not raw.readonly:
        flat = torch.frombuffer(raw, dtype=torch.uint8)
        if flat.data_ptr() % itemsize == 0:
            return flat.view(dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype)


def _items(value: Any) -> list:
    if not isinstance(value, list):
        raise _damaged("a container that is not a list")
    return value


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(s, int) and s >= 0 for s in value):
        raise _damaged("a bad shape")
    return tuple(value)


def _damaged(what: str) -> EvoregError:
    return EvoregError(f"damaged saved state ({what})")
