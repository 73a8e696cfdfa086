"""Aleph-parameters of a trained model: which few values to tune, within which bounds, and
how a choice of them is scored on a split.

Videau et al. (2024), "Evolutionary Retrofitting" (AfterLearnER): after training, a
black-box optimizer tunes a handful of a model's parameters (its aleph-parameters: output
biases, BatchNorm statistics, thresholds) against a non-differentiable metric measured on a
validation split. This module is that setting, independent of any optimizer: the
``retrofit`` problem (``evoreg.problems.retrofit``) puts a :class:`Scenario` behind the
ask/tell core.

Selecting (``params``): a state_dict name (``"fc2.bias"``), a glob over the names
(``"*.bn.running_mean"``, fnmatch rules), a basic index into an entry
(``"fc.weight[3:5]"``, ``"fc.weight[0, :4]"``, or ``("fc.weight", slice(3, 5))``), or a
named scalar hyperparameter of the loss. ``params`` is one of these, a list of them, or a
dict from them to bounds. A name that is no state_dict entry is a hyperparameter when the
loss takes a keyword argument of that name (or takes ``**kwargs`` and bounds are given): the
loss is then called as ``loss(model, batch, name=value)``, and its default for that keyword
is the starting value (the midpoint of the bounds when it has none). A trailing ``[...]`` of
integers, colons and commas is an index, not a glob character class.

Bounds: ``(lower, upper)``, each a number, one number per selected value, or None for the
default on that side. By default each value may move by ``radius`` (2) times the larger of 1
and the root mean square of its whole tensor, and a tensor whose values are all positive
(variances, scales) keeps every value above a tenth of its current one. Why: a black-box
optimizer needs a box to search in, and a trained model's small tensors say little about how
far their values may usefully move: output biases of a well-trained classifier sit near 0
(RMS 0.07 on the built-in Fashion-MNIST model) while shifts of a logit or two are what
change decisions, so the unit is 1 where the tensor's own scale is below 1 and that scale
above (running variances of 10 move by 10 per unit of radius). ``radius=2`` was measured on
the built-in scenario (output biases, 100 evaluations, 5 splits, ng:NGOpt, ng:DiagonalCMA,
ng:OnePlusOne and random-search; ``benchmarks/retrofit.py --radius R --budgets 100 --runs 1
--seeds 5``): mean relative test gain on worst-recall / cost 30.5 / 18.6% at radius 0.5,
34.9 / 28.1% at 1, 35.4 / 31.1% at 2 and 27.7 / 28.8% at 4, where random search, which
samples the whole box, fell to 4% on worst-recall; the validation-test gap grew about alike
from 1 to 4. Hyperparameters get the same rule around their starting value (``temperature``
1: [0.1, 3]). The optimizer's step (``sigma`` of the ``Real`` space) is half the median
half-width.

Scoring: the model is a deep copy (the caller's model is never written), in eval mode
(BatchNorm reads its running statistics, dropout is off); every split is read once (batches
of a DataLoader are kept, on the scenario's device), and losses are computed under
``torch.no_grad()``. A built-in loss (see ``classifier_losses``) gathers the logits of a
whole split and scores them at once, so metrics that do not decompose over batches (macro-F1,
worst recall) are exact; a loss of the caller's, ``loss(model, batch) -> float``, is called
on each batch and the values are averaged weighted by batch size (pass the split as one
``(inputs, targets)`` batch for a metric over the whole split). With a built-in loss and an
``nn.Sequential`` model, the leading modules that hold no aleph-parameter run once per split:
their outputs are kept and each evaluation runs only the rest (for output biases, one small
matrix product), since those modules do not change between candidates.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import fnmatch
import hashlib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from evoreg.errors import EvoregError, close_matches, unknown_name
from evoreg.problems import classifier_losses

#: Rows per forward pass when a split's inputs go through the model.
CHUNK = 8192
_INDEXED = re.compile(r"^(?P<name>.+?)\[(?P<index>[-0-9:,\s]*)\]$")
_GLOB = re.compile(r"[*?\[]")


# --------------------------------------------------------------------------- selecting
@dataclass(frozen=True)
class Entry:
    """A tensor of the model's state (or a basic index into one) that is searched."""

    name: str  #: state_dict name
    index: Any  #: None (the whole tensor), or an int / slice / tuple of them
    label: str  #: as a user writes it: ``fc.weight[3:5]``
    shape: tuple[int, ...]  #: shape of the selected values
    init: torch.Tensor  #: float32 [size]: the current values
    lower: torch.Tensor  #: float32 [size]
    upper: torch.Tensor  #: float32 [size]

    @property
    def size(self) -> int:
        return int(self.init.numel())


@dataclass(frozen=True)
class Hyperparameter:
    """A named scalar that the loss reads as a keyword argument."""

    name: str
    init: float
    lower: float
    upper: float


def parse_index(text: str, where: str) -> Any:
    """``"3:5"`` -> ``slice(3, 5)``, ``"0, :4"`` -> ``(0, slice(None, 4))``."""
    parts = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                pieces = [p.strip() for p in part.split(":")]
                if len(pieces) > 3:
                    raise ValueError
                parts.append(slice(*(int(p) if p else None for p in pieces)))
            else:
                parts.append(int(part))
        except ValueError:
            raise EvoregError(f"{where}: {text!r} is not an index such as 3:5 or 0, :4") from None
    return parts[0] if len(parts) == 1 else tuple(parts)


def index_text(index: Any) -> str:
    def one(part: Any) -> str:
        if isinstance(part, slice):
            text = ":".join("" if v is None else str(v) for v in (part.start, part.stop))
            return text + (f":{part.step}" if part.step is not None else "")
        return str(part)

    return ", ".join(one(p) for p in (index if isinstance(index, tuple) else (index,)))


def _split_top_level(text: str) -> list[str]:
    """``"a[0, 1],b"`` -> ``["a[0, 1]", "b"]``: commas inside brackets stay."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items.append(current.strip())
    return [item for item in items if item]


def normalise_params(params: Any) -> list[tuple[str, Any, Any]]:
    """``params`` in any accepted form as a list of ``(name or glob, index, bounds)``."""
    if isinstance(params, str):
        text = params.strip()
        if text[:1] in "[{(":
            try:
                params = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise EvoregError(
                    f"params={params!r} is neither a comma-separated list of names nor a Python "
                    "literal such as {'fc.bias': (-1, 1)}"
                ) from None
            return normalise_params(params)
        items: list[tuple[Any, Any]] = [(item, None) for item in _split_top_level(text)]
    elif isinstance(params, Mapping):
        items = list(params.items())
    elif isinstance(params, tuple) and len(params) == 2 and isinstance(params[0], str) \
            and not isinstance(params[1], str):
        items = [(params, None)]  # one (name, index) pair
    elif isinstance(params, Iterable):
        items = [(item, None) for item in params]
    else:
        raise EvoregError(f"params must be names, (name, index) pairs or a dict; got {params!r}")
    if not items:
        raise EvoregError("params selects nothing: name at least one state_dict entry")
    specs = []
    for spec, bounds in items:
        if isinstance(spec, tuple):
            if len(spec) != 2 or not isinstance(spec[0], str):
                raise EvoregError(f"params: {spec!r} is not a (name, index) pair")
            specs.append((spec[0], spec[1], bounds))
        elif isinstance(spec, str):
            match = _INDEXED.match(spec.strip())
            if match:
                specs.append((match["name"], parse_index(match["index"], spec), bounds))
            else:
                specs.append((spec.strip(), None, bounds))
        else:
            raise EvoregError(f"params: {spec!r} is not a name, a glob or a (name, index) pair")
    return specs


def loss_keywords(loss: Callable[..., Any]) -> tuple[dict[str, float | None], bool]:
    """The keyword arguments a loss of the caller's takes after ``(model, batch)``, with
    their defaults (None when it has none), and whether it takes ``**kwargs``."""
    try:
        parameters = list(inspect.signature(loss).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature
        return {}, False
    keywords: dict[str, float | None] = {}
    positional = 0
    for parameter in parameters:
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD) \
                and positional < 2:
            positional += 1  # model, batch
            continue
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            default = parameter.default
            keywords[parameter.name] = None if default is parameter.empty else default
    any_keyword = any(p.kind == p.VAR_KEYWORD for p in parameters)
    return keywords, any_keyword


def select(
    state: Mapping[str, torch.Tensor],
    params: Any,
    keywords: Mapping[str, float | None],
    any_keyword: bool = False,
    radius: float = 2.0,
) -> tuple[list[Entry], list[Hyperparameter]]:
    """The entries of ``state`` (a ``state_dict(keep_vars=True)``) and the hyperparameters
    that ``params`` selects, with their bounds."""
    entries: list[Entry] = []
    hypers: list[Hyperparameter] = []
    seen: dict[str, str] = {}
    for pattern, index, bounds in normalise_params(params):
        if _GLOB.search(pattern):
            names = [name for name in state if fnmatch.fnmatchcase(name, pattern)]
            floating = [name for name in names if state[name].is_floating_point()]
            if not floating:
                found = f" ({len(names)} match, none floating point)" if names else ""
                hint = close_matches(pattern.replace("*", ""), state)
                raise EvoregError(
                    f"params: no floating-point state_dict entry matches {pattern!r}{found}"
                    + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else
                       f"; entries: {_some(state)}")
                )
            names = floating
        elif pattern in state:
            if not state[pattern].is_floating_point():
                raise EvoregError(f"params: {pattern} holds {state[pattern].dtype} values; only "
                                  "floating-point entries can be tuned")
            names = [pattern]
        elif pattern.isidentifier() and index is None and (
                pattern in keywords or (any_keyword and bounds is not None)):
            if pattern in seen:
                raise EvoregError(f"params: {pattern} is selected twice")
            seen[pattern] = pattern
            hypers.append(_hyperparameter(pattern, keywords.get(pattern), bounds, radius))
            continue
        else:
            known = list(state) + list(keywords)
            matches = close_matches(pattern, known)
            if pattern.isidentifier() and not matches:
                raise EvoregError(
                    f"params: {pattern!r} is neither a state_dict entry nor a keyword argument "
                    f"of the loss; a hyperparameter is one the loss takes, as in def loss(model, "
                    f"batch, {pattern}=1.0) (entries: {_some(state)})"
                )
            raise unknown_name("state_dict entry or hyperparameter of the loss", pattern, known)
        for name in names:
            label = name if index is None else f"{name}[{index_text(index)}]"
            if name in seen:
                raise EvoregError(f"params: {name} is selected twice ({seen[name]}, {label})")
            seen[name] = label
            entries.append(_entry(name, index, label, state[name], bounds, radius))
    return entries, hypers


def _some(names: Iterable[str], n: int = 8) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def _entry(name: str, index: Any, label: str, tensor: torch.Tensor, bounds: Any,
           radius: float) -> Entry:
    whole = tensor.detach().float().cpu()
    try:
        view = whole if index is None else whole[index]
    except (IndexError, TypeError, ValueError) as error:
        raise EvoregError(f"params: {label} does not index {name} of shape "
                          f"{tuple(whole.shape)} ({error})") from None
    if view.numel() == 0:
        raise EvoregError(f"params: {label} selects no value")
    init = view.flatten().clone()
    # One unit where the tensor's own scale is below 1, else that scale (module docstring).
    half = radius * max(1.0, float(whole.pow(2).mean().sqrt()))
    lower, upper = init - half, init + half
    if bool((whole > 0).all()):
        lower = torch.maximum(lower, init / 10)  # variances and scales stay positive
    lower, upper = _given_bounds(label, bounds, lower, upper)
    _check_box(label, init, lower, upper)
    return Entry(name, index, label, tuple(view.shape), init, lower, upper)


def _hyperparameter(name: str, default: Any, bounds: Any, radius: float) -> Hyperparameter:
    given = _pair(name, bounds)
    if default is None:
        if given is None or given[0] is None or given[1] is None:
            raise EvoregError(f"params: hyperparameter {name} has no default in the loss's "
                              "signature; give both bounds, e.g. {'" + name + "': (0.5, 2.0)}")
        init = (float(given[0]) + float(given[1])) / 2
    else:
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise EvoregError(f"params: hyperparameter {name} defaults to {default!r} in the "
                              "loss's signature; only numbers can be tuned")
        init = float(default)
    half = radius * max(1.0, abs(init))
    lower, upper = init - half, init + half
    if init > 0:
        lower = max(lower, init / 10)
    low, high = _given_bounds(name, bounds, torch.tensor([lower]), torch.tensor([upper]))
    _check_box(name, torch.tensor([init]), low, high)
    return Hyperparameter(name, init, float(low[0]), float(high[0]))


def _pair(label: str, bounds: Any) -> tuple[Any, Any] | None:
    if bounds is None:
        return None
    if isinstance(bounds, (str, bytes)) or not isinstance(bounds, (tuple, list)) \
            or len(bounds) != 2:
        raise EvoregError(f"params: the bounds of {label} must be (lower, upper), each a "
                          f"number, one number per value, or None; got {bounds!r}")
    return bounds[0], bounds[1]


def _given_bounds(label: str, bounds: Any, lower: torch.Tensor,
                  upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pair = _pair(label, bounds)
    if pair is None:
        return lower, upper
    sides = []
    for side, default in zip(pair, (lower, upper)):
        if side is None:
            sides.append(default)
            continue
        try:
            value = torch.as_tensor(side, dtype=torch.float32).flatten()
        except (TypeError, ValueError, RuntimeError):
            raise EvoregError(f"params: bound {side!r} of {label} is not a number") from None
        if value.numel() == 1:
            value = value.expand(default.numel())
        if value.numel() != default.numel():
            raise EvoregError(f"params: {label} selects {default.numel()} values; its bound "
                              f"has {value.numel()}")
        if not bool(torch.isfinite(value).all()):
            raise EvoregError(f"params: the bounds of {label} must be finite")
        sides.append(value.clone())
    return sides[0], sides[1]


def _check_box(label: str, init: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> None:
    crossed = torch.nonzero(~(lower < upper)).flatten().tolist()
    if crossed:
        raise EvoregError(f"params: {label} has lower >= upper at value {crossed[0]}")
    outside = torch.nonzero((init < lower) | (init > upper)).flatten().tolist()
    if outside:
        i = outside[0]
        raise EvoregError(
            f"params: the current value of {label} at {i} ({float(init[i]):g}) lies outside "
            f"its bounds [{float(lower[i]):g}, {float(upper[i]):g}]; the search starts from the "
            "current values, so widen the bounds to include them"
        )


# --------------------------------------------------------------------------- data
def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor it holds (in tuples, lists, dicts) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(to_device(b, device) for b in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def read_split(data: Any, device: torch.device, what: str) -> list[Any]:
    """A split as a list of batches on ``device``, read once.

    ``(inputs, targets)`` tensors (or numpy arrays) are one batch; a ``Dataset`` is read in
    batches of 1024; any other iterable (a ``DataLoader``, a list of batches) batch by batch.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(d, torch.Tensor) or hasattr(d, "__array__") for d in data):
        inputs, targets = (torch.as_tensor(d) for d in data)
        if len(inputs) != len(targets):
            raise EvoregError(f"{what}: {len(inputs)} inputs but {len(targets)} targets")
        batches = [(inputs, targets)]
    elif isinstance(data, torch.utils.data.Dataset) and not isinstance(
            data, torch.utils.data.IterableDataset):
        batches = list(torch.utils.data.DataLoader(data, batch_size=1024))
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, torch.Tensor)):
        batches = list(data)
    else:
        raise EvoregError(f"{what} must be (inputs, targets), a Dataset or an iterable of "
                          f"batches (a DataLoader); got {type(data).__name__}")
    if not batches:
        raise EvoregError(f"{what} holds no batch")
    return [to_device(batch, device) for batch in batches]


def batch_size(batch: Any) -> int:
    """The number of samples of a batch: the length of its first tensor (1 if none)."""
    if isinstance(batch, torch.Tensor):
        return len(batch) if batch.dim() else 1
    if isinstance(batch, (tuple, list)) and batch:
        return batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return batch_size(next(iter(batch.values())))
    return 1


def _pairs(batches: list[Any], what: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    for batch in batches:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2
                and isinstance(batch[0], torch.Tensor) and isinstance(batch[1], torch.Tensor)):
            raise EvoregError(f"{what}: a built-in loss needs batches of (inputs, labels) "
                              f"tensors; got {type(batch).__name__}")
    return [(inputs, labels) for inputs, labels in batches]


# --------------------------------------------------------------------------- scoring
@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block (None or 0: unchanged)."""
    before = torch.get_num_threads()
    if not threads or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Scenario:
    """A trained model's working copy, its aleph-parameters and the splits that score them.

    ``loss``: a built-in name (``error``, ``cost``, ``macro-f1``, ``worst-recall``, ``ece``)
    or ``loss(model, batch, **hyperparameters) -> float``. ``costs`` is the cost matrix of
    ``cost`` (default: ``classifier_losses.default_costs``). ``cache_prefix`` runs the
    leading modules of an ``nn.Sequential`` once per split (built-in losses only).
    ``threads`` sets torch's intra-op threads while scoring (None: torch's own setting).
    """

    def __init__(
        self,
        model: nn.Module,
        params: Any,
        loss: str | Callable[..., Any],
        val: Any,
        test: Any = None,
        *,
        device: torch.device | str = "cpu",
        radius: float = 2.0,
        costs: Any = None,
        cache_prefix: bool = True,
        threads: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise EvoregError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
            raise EvoregError(f"radius must be a finite number > 0, got {radius!r}")
        self.device = torch.device(device)
        self.threads = threads
        self.builtin = isinstance(loss, str)
        if self.builtin:
            matrix = None if costs is None else torch.as_tensor(costs, dtype=torch.float64)
            self.loss_name = loss
            self._loss = classifier_losses.builtin_loss(loss, matrix)
            keywords, any_keyword = dict(classifier_losses.HYPERPARAMETERS), False
        elif callable(loss):
            self.loss_name = f"{getattr(loss, '__module__', '?')}." \
                             f"{getattr(loss, '__qualname__', type(loss).__name__)}"
            self._loss = loss
            keywords, any_keyword = loss_keywords(loss)
        else:
            raise unknown_name("loss", str(loss), classifier_losses.DESCRIPTIONS)
        # The caller's model is never written: every candidate goes into this copy.
        self.model = copy.deepcopy(model).to(self.device).eval()
        state = self.model.state_dict(keep_vars=True)
        self.entries, self.hypers = select(state, params, keywords, any_keyword, radius)
        if not self.entries and not self.hypers:
            raise EvoregError("params selects nothing")
        self.tensors = {entry.name: state[entry.name] for entry in self.entries}
        self.init = torch.cat([e.init for e in self.entries]
                              + [torch.tensor([h.init]) for h in self.hypers])
        self.lower = torch.cat([e.lower for e in self.entries]
                               + [torch.tensor([h.lower]) for h in self.hypers])
        self.upper = torch.cat([e.upper for e in self.entries]
                               + [torch.tensor([h.upper]) for h in self.hypers])
        self.sigma = float((self.upper - self.lower).median()) / 4  # half the half-width
        self.splits = {"validation": read_split(val, self.device, "val")}
        if test is not None:
            self.splits["test"] = read_split(test, self.device, "test")
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.model
        self.cut = 0
        if self.builtin:
            self.splits = {k: _pairs(v, k) for k, v in self.splits.items()}
            if cache_prefix:
                self._cache_prefix()
        self.untouched = {split: self.score(split) for split in self.splits}

    # ----------------------------------------------------------------- structure
    @property
    def dim(self) -> int:
        return int(self.init.numel())

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.entries] + [h.name for h in self.hypers]

    def _cache_prefix(self) -> None:
        """Run the leading modules that hold no aleph-parameter once per split (see the
        module docstring); each evaluation then runs only the rest."""
        if not isinstance(self.model, nn.Sequential) or not self.entries:
            return
        children = [name for name, _ in self.model.named_children()]
        tops = {entry.name.split(".", 1)[0] for entry in self.entries}
        if not tops <= set(children):
            return
        cut = min(children.index(top) for top in tops)
        if cut == 0:
            return
        prefix = self.model[:cut]
        with torch.no_grad(), torch_threads(self.threads):
            for split, batches in self.splits.items():
                features = [(torch.cat([prefix(x) for x in inputs.split(CHUNK)]), labels)
                            for inputs, labels in batches]
                self.splits[split] = features
        self.cut = cut
        self.forward = self.model[cut:]

    def fingerprint(self) -> str:
        """What a resumed run must share with the one it continues: the selection, its
        starting values and bounds, the loss and the untouched model's losses."""
        digest = hashlib.sha256()
        digest.update(repr((self.labels, self.loss_name, self.cut)).encode())
        for vector in (self.init, self.lower, self.upper):
            digest.update(vector.numpy().tobytes())
        digest.update(repr(sum(batch_size(b) for b in self.splits["validation"])).encode())
        digest.update(repr(self.untouched).encode())
        return digest.hexdigest()[:16]

    # ----------------------------------------------------------------- candidates
    def load(self, x: torch.Tensor) -> dict[str, float]:
        """Write candidate ``x`` into the working copy; return its hyperparameters."""
        x = torch.as_tensor(x, dtype=torch.float32).detach().flatten()
        if x.numel() != self.dim:
            raise EvoregError(f"a candidate has {x.numel()} values; the selection has {self.dim}")
        self._write(self.tensors, x)
        offset = sum(e.size for e in self.entries)
        return {h.name: float(x[offset + i]) for i, h in enumerate(self.hypers)}

    def _write(self, tensors: Mapping[str, torch.Tensor], x: torch.Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for entry in self.entries:
                target = tensors[entry.name]
                chunk = x[offset:offset + entry.size].view(entry.shape)
                chunk = chunk.to(device=target.device, dtype=target.dtype)
                if entry.index is None:
                    target.copy_(chunk)
                else:
                    target[entry.index] = chunk
                offset += entry.size

    def apply_to(self, model: nn.Module, x: torch.Tensor) -> nn.Module:
        """Write the tensor values of ``x`` into ``model`` (in place) and return it."""
        state = model.state_dict(keep_vars=True)
        missing = [e.name for e in self.entries if e.name not in state]
        if missing:
            raise EvoregError(f"the model has no {', '.join(missing)}")
        self._write(state, torch.as_tensor(x, dtype=torch.float32).flatten().cpu())
        return model

    def values(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """Candidate ``x`` by label: a tensor of the selection's shape for each entry, a
        float for each hyperparameter."""
        x = torch.as_tensor(x, dtype=torch.float32).detach().flatten().cpu()
        values: dict[str, torch.Tensor | float] = {}
        offset = 0
        for entry in self.entries:
            values[entry.label] = x[offset:offset + entry.size].view(entry.shape).clone()
            offset += entry.size
        for i, hyper in enumerate(self.hypers):
            values[hyper.name] = float(x[offset + i])
        return values

    # ----------------------------------------------------------------- losses
    def score(self, split: str, hyper: Mapping[str, float] | None = None) -> float:
        """The loss of the working copy as it stands on ``split``."""
        hyper = dict(hyper or {h.name: h.init for h in self.hypers})
        batches = self.splits[split]
        with torch.no_grad(), torch_threads(self.threads):
            if self.builtin:
                logits = torch.cat([self.forward(chunk) for inputs, _ in batches
                                    for chunk in inputs.split(CHUNK)])
                labels = torch.cat([labels for _, labels in batches])
                return float(self._loss(logits, labels, **hyper))
            total, weight = 0.0, 0
            for batch in batches:
                size = batch_size(batch)
                total += float(self._loss(self.model, batch, **hyper)) * size
                weight += size
            return total / weight

    def loss(self, x: torch.Tensor, split: str = "validation") -> float:
        """The loss of candidate ``x`` on ``split``."""
        return self.score(split, self.load(x))

    def accuracy(self, x: torch.Tensor, split: str) -> float | None:
        """Accuracy of candidate ``x`` on ``split`` (built-in losses only, else None)."""
        if not self.builtin:
            return None
        self.load(x)
        return 1.0 - self.score_with(classifier_losses.error_rate, split)

    def score_with(self, metric: Callable[..., float], split: str) -> float:
        batches = self.splits[split]
        with torch.no_grad(), torch_threads(self.threads):
            logits = torch.cat([self.forward(chunk) for inputs, _ in batches
                                for chunk in inputs.split(CHUNK)])
        return float(metric(logits, torch.cat([labels for _, labels in batches])))
