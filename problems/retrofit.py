"""Retrofit a trained model: tune a few of its parameters against a non-differentiable loss.

Videau et al. (2024), "Evolutionary Retrofitting" (AfterLearnER): a black-box optimizer
(NGOpt, DiagonalCMA, (1+1)) tunes the aleph-parameters of a fully trained model (output
biases, BatchNorm statistics, thresholds) on a validation split, with a budget of dozens to
hundreds of evaluations; several independent runs, the winner chosen on validation; the test
split is held out and reported beside the untouched model. Their analysis: few runs and a
small budget keep the search from overfitting the validation split (more runs or more
parallelism bring it closer to random search).

The problem is a ``Real`` space over the selected values (see ``evoreg.problems.aleph`` for
names, globs, slices, hyperparameters and the default bounds), starting at the model's
current values; one evaluation is the aleph-loss of one candidate on the validation split,
and the budget counts them. ``report`` gives the validation and test losses of a candidate
and of the untouched model, the relative test gain, the test accuracy (classifier losses)
and the tuned values.

From the command line the model is a file (``model=PATH``) scored on one of evoreg's image
sets, or, by default, the built-in scenario: a BatchNorm MLP (flatten, 128, BN, ReLU, 64, BN,
ReLU, 10; modules ``fc1 bn1 relu1 fc2 bn2 relu2 out``) trained with Adam (lr 1e-3, batch
128; 3 epochs on Fashion-MNIST, 40 on digits) once and cached as a weights-only state dict
under ``data_root``/retrofit/. Its presets: ``output-bias`` (the 10 output biases) and
``bn-stats`` (the running mean and variance of the last BatchNorm layer, 128 values).
Splits: a fixed 5/6 of the training images train the built-in model; the rest of them and
the test images form the held-out pool (``pool=test``: the test images alone, for a model
trained on the whole training set), which ``split_seed`` divides into validation
(``validation_share``) and test, disjoint from each other and from the training images.

Model files: ``.safetensors`` (with the ``safetensors`` package) or ``torch.save`` files
read with ``torch.load(weights_only=True)``, which runs no code from the file. A state dict
needs its architecture: ``arch=auto`` (the built-in classifier), one of
``evoreg.problems.models`` (``mlp92k``, ``convnet9854``, ``mlp-digits``), or
``package.module:function``, an installed function that returns the untrained module. A
whole pickled module is loaded only with ``trust_model=true``: unpickling runs code.

``retrofit(...)`` (``evoreg.retrofit``) is the same for a model, data and loss in Python.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pickle
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evoreg import Evaluation, EvoregError, Population, Problem, Real, hookimpl
from evoreg.checkpoint import atomic_path
from evoreg.config import bounded
from evoreg.errors import unknown_name
from evoreg.problems import classifier_losses, datasets
from evoreg.problems.aleph import Scenario, batch_size, torch_threads
from evoreg.problems.models import MODELS, build_model

CITATION = "Videau et al. (2024), Evolutionary Retrofitting (AfterLearnER)"
PRESETS = ("output-bias", "bn-stats")
LOSSES = tuple(classifier_losses.DESCRIPTIONS)
#: Share of the training images that train the built-in model (the rest join the pool).
TRAIN_SHARE = 5 / 6
HIDDEN = (128, 64)
EPOCHS = {"digits": 40}  #: built-in training epochs; 3 for the 28x28 sets
CACHE_VERSION = 2  #: bump when the built-in training changes, so old caches are not reused
UNTRUSTED = (
    "{path} holds a pickled object (a whole module, not a state dict), and loading it could "
    "run code from the file; if you trust whoever made it, pass --set trust_model=true "
    "(Python: trust_model=True), or save its state_dict (torch.save(model.state_dict(), PATH)) "
    "and pass --set arch=... for its architecture"
)


@dataclass
class Config:
    #: a model file (.safetensors, or torch.save of a state dict; a pickled module only with
    #: trust_model); "": the built-in scenario's classifier, trained once and cached
    model: str = ""
    #: architecture of a state-dict file: auto (the built-in classifier), mlp92k,
    #: convnet9854, mlp-digits, or package.module:function returning the untrained module
    arch: str = "auto"
    trust_model: bool = False  #: load a whole pickled module (runs code from the file)
    #: aleph-parameters: comma-separated names, globs, indexed names (fc.weight[3:5]), or a
    #: Python literal dict of bounds {'out.bias': (-2, 2)}; "": the preset's
    params: str = ""
    #: output-bias (the last bias entry: the output layer's) or bn-stats (running mean and
    #: variance of the last BatchNorm layer); used when params is ""
    preset: Literal["output-bias", "bn-stats"] = "output-bias"
    #: error, cost (cost-weighted error), macro-f1 (1 - macro-F1), worst-recall (1 - the
    #: lowest class recall), ece (expected calibration error)
    loss: str = "worst-recall"
    #: cost matrix of loss=cost, a literal list of rows [[0, 1, ...], ...] (true x
    #: predicted); "": every error costs 1, a missed class 6 costs 5
    costs: str = ""
    #: default bounds: each value moves by radius x max(1, RMS of its tensor)
    radius: float = bounded(2.0, gt=0)
    #: data the model is scored on: auto (fashion-mnist where found, else digits)
    dataset: Literal["auto", "digits", "fashion-mnist", "mnist", "kmnist"] = "auto"
    data_root: str = ""  #: data and the cached model ("": $EVOREG_DATA or ~/.cache/evoreg/data)
    download: bool = False  #: let torchvision download missing data (needs internet)
    normalization: Literal["half", "none"] = "half"  #: pixels (x - .5) / .5, or left in [0, 1]
    #: held-out pool split into validation and test: holdout+test (the training images the
    #: built-in model did not see, and the test set), or test (for models trained on all)
    pool: Literal["holdout+test", "test"] = "holdout+test"
    validation_share: float = bounded(0.5, gt=0, lt=1)  #: share of the pool for validation
    split_seed: int = bounded(0, ge=0)  #: which pool images are validation and which test
    #: epochs of the built-in model's Adam training; None: 3 (40 on digits)
    train_epochs: int | None = bounded(None, ge=1)
    train_seed: int = bounded(0, ge=0)  #: seed of the built-in model's initialisation and batches
    #: score only the modules after the first tuned one, on cached features (nn.Sequential
    #: models and built-in losses: the others are unchanged between candidates)
    cache_prefix: bool = True
    #: torch threads while scoring and training the built-in model (0: torch's setting);
    #: the work is small: on a loaded 2-core CPU 2 threads made an evaluation 24x slower
    threads: int = bounded(1, ge=0)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:  # refused before any data or model is loaded
            raise unknown_name("loss", self.loss, LOSSES)


@dataclass
class ObjectsConfig:
    """What ``evoreg.retrofit`` records of the Python objects it was given (run.json)."""

    model: str = ""
    params: str = ""
    loss: str = ""
    radius: float = bounded(2.0, gt=0)
    validation: str = ""
    test: str = ""
    cache_prefix: bool = True


class Retrofit(Problem):
    """Retrofit a trained model (AfterLearnER): tune its aleph-parameters (output biases,
    BatchNorm statistics, named hyperparameters of the loss) against a non-differentiable
    loss on a validation split; ``report`` gives the test loss beside the untouched model's.

    Losses: error, cost (a cost matrix), macro-f1, worst-recall, ece. The default is the
    built-in scenario, a BatchNorm MLP trained once with Adam on Fashion-MNIST (digits where
    Fashion-MNIST is absent) and cached, with presets output-bias and bn-stats; model=PATH
    retrofits a file of yours (weights-only torch or safetensors; a pickled module only with
    trust_model=true). The budget counts evaluations on the validation split. Each value
    moves within +-radius x max(1, RMS of its tensor) unless params gives bounds. In Python,
    evoreg.retrofit(model, params, loss, val, test) does the same for any torch module, data
    and loss, with several runs and the winner chosen on validation.
    """

    Config = Config
    name = "retrofit"
    citation = CITATION
    budget_unit = "evaluations"

    def __init__(self, *, seed: int = 0, device: str | torch.device = "cpu",
                 scenario: Scenario | None = None, **config: Any) -> None:
        self.scenario = scenario
        super().__init__(seed=seed, device=device, **config)

    def setup(self) -> None:
        if self.scenario is None:
            self.scenario = scenario_from_config(self.config, self.device)
        s = self.scenario
        self.space = Real(s.dim, init=s.init, sigma=s.sigma, lower=s.lower, upper=s.upper)
        self.evaluations = 0

    def evaluate(self, pop: Population, *, gradients: bool = False) -> Evaluation:
        if gradients:
            raise EvoregError("retrofit provides no gradients")
        rows = pop.rows(0, len(pop))
        losses = torch.tensor([self.scenario.loss(row) for row in rows], dtype=torch.float64)
        self.evaluations += len(rows)
        return Evaluation(losses, cost=float(len(rows)))

    def report(self, x: Any) -> dict[str, Any]:
        """Validation and test loss of ``x`` and of the untouched model, the relative test
        gain, test accuracy (built-in losses) and the tuned values."""
        s = self.scenario
        figures: dict[str, Any] = {"loss": s.loss_name}
        for split in s.splits:
            figures[f"{split}_loss"] = s.loss(x, split)
            figures[f"{split}_loss_untouched"] = s.untouched[split]
        if "test" in s.splits:
            before = s.untouched["test"]
            figures["test_gain"] = (before - figures["test_loss"]) / before if before else 0.0
            if s.builtin:
                figures["test_accuracy"] = s.accuracy(x, "test")
                figures["test_accuracy_untouched"] = s.accuracy(s.init, "test")
        figures["values"] = {label: (v.tolist() if isinstance(v, torch.Tensor) else v)
                             for label, v in s.values(x).items()}
        return figures

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "evaluations": self.evaluations,
                "fingerprint": self.scenario.fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self.scenario.fingerprint()
        if state.get("fingerprint") != mine:
            raise EvoregError(
                "cannot resume: the checkpoint was made with another model, selection, loss "
                f"or validation split (its fingerprint {state.get('fingerprint')}, this "
                f"run's {mine})"
            )
        super().load_state_dict(state)
        self.evaluations = state["evaluations"]


class RetrofitObjects(Retrofit):
    """``retrofit`` over Python objects (``evoreg.retrofit``): the config only records them."""

    Config = ObjectsConfig

    def setup(self) -> None:
        if self.scenario is None:
            raise EvoregError("retrofit over Python objects needs scenario=; from the command "
                              "line use the 'retrofit' problem")
        super().setup()


# --------------------------------------------------------------------------- the scenario
def classifier(input_shape: tuple[int, ...], classes: int = 10) -> nn.Sequential:
    """The built-in scenario's classifier: flatten, Linear-BN-ReLU x 2 (128, 64), Linear."""
    features = int(np.prod(input_shape))
    first, second = HIDDEN
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(features, first), bn1=nn.BatchNorm1d(first),
        relu1=nn.ReLU(), fc2=nn.Linear(first, second), bn2=nn.BatchNorm1d(second),
        relu2=nn.ReLU(), out=nn.Linear(second, classes),
    ))


@dataclass
class Splits:
    """Normalised images and labels of the three disjoint splits."""

    dataset: str
    train: tuple[torch.Tensor, torch.Tensor]
    validation: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    classes: int


def resolve_dataset(config: Any) -> tuple[str, datasets.ImageData]:
    """The data set (``auto``: Fashion-MNIST where its files are found, else digits)."""
    root = config.data_root or None
    if config.dataset != "auto":
        return config.dataset, datasets.load(config.dataset, root, config.download)
    name = datasets.default_dataset(root)
    return name, datasets.load(name, root)


def split_indices(train_count: int, test_count: int, config: Any) -> dict[str, torch.Tensor]:
    """Indices of the train, validation and test splits into the training images followed
    by the test images (``test_count`` of them, from ``train_count`` on): disjoint."""
    # A fixed permutation (seed 0) picks the built-in model's training images: one cached
    # model then serves every split_seed.
    order = torch.from_numpy(np.random.RandomState(0).permutation(train_count))
    cut = int(train_count * TRAIN_SHARE)
    tests = torch.arange(train_count, train_count + test_count)
    pool = tests if config.pool == "test" else torch.cat([order[cut:], tests])
    shuffled = pool[torch.from_numpy(np.random.RandomState(config.split_seed)
                                     .permutation(len(pool)))]
    size = max(1, min(len(pool) - 1, round(len(pool) * config.validation_share)))
    return {"train": order[:cut], "validation": shuffled[:size], "test": shuffled[size:]}


def make_splits(config: Any) -> Splits:
    name, data = resolve_dataset(config)
    count = len(data.train_labels)
    index = split_indices(count, len(data.test_labels), config)

    def take(i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trained = i < count
        images = torch.empty((len(i), *data.train_images.shape[1:]))
        labels = torch.empty(len(i), dtype=torch.int64)
        images[trained], labels[trained] = data.train_images[i[trained]], data.train_labels[
            i[trained]]
        images[~trained] = data.test_images[i[~trained] - count]
        labels[~trained] = data.test_labels[i[~trained] - count]
        return ((images - 0.5) / 0.5 if config.normalization == "half" else images), labels

    parts = {split: take(i) for split, i in index.items()}
    return Splits(name, parts["train"], parts["validation"], parts["test"], data.classes)


def trained_classifier(config: Any, splits: Splits) -> nn.Module:
    """The built-in classifier, trained once with Adam and cached as a weights-only state
    dict under ``data_root``/retrofit/ (loading it runs no code)."""
    epochs = config.train_epochs or EPOCHS.get(splits.dataset, 3)
    images, labels = splits.train
    model = classifier(tuple(images.shape[1:]), splits.classes)
    root = Path(config.data_root or datasets.default_data_root()).expanduser()
    stem = (f"{splits.dataset}-{config.normalization}-mlp{'-'.join(map(str, HIDDEN))}-bn-"
            f"e{epochs}-seed{config.train_seed}-v{CACHE_VERSION}")
    path = root / "retrofit" / f"{stem}.pt"
    if path.is_file():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        except (RuntimeError, pickle.UnpicklingError, EOFError):
            pass  # damaged: train again and replace it
    # One thread (config.threads): a step of this small network took 186 ms with two threads
    # on a loaded 2-core CPU and 1 ms with one.
    with torch.random.fork_rng(devices=[]), torch_threads(config.threads):
        torch.manual_seed(config.train_seed)
        generator = torch.Generator().manual_seed(config.train_seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        for _ in range(epochs):
            for index in torch.randperm(len(labels), generator=generator).split(128):
                if len(index) < 2:
                    continue  # BatchNorm needs two samples
                loss = F.cross_entropy(model(images[index]), labels[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    model.eval()
    try:
        with atomic_path(path) as temporary:
            torch.save(model.state_dict(), temporary)
    except OSError:
        pass  # a read-only data root: the model is used, not cached
    return model


def architecture(arch: str, input_shape: tuple[int, ...], classes: int) -> nn.Module:
    """The untrained module a state-dict file is loaded into."""
    if arch == "auto":
        return classifier(input_shape, classes)
    if arch in MODELS:
        return build_model(arch, classes)
    if ":" in arch:
        module_name, _, function = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), function)
        except (ImportError, AttributeError) as error:
            raise EvoregError(f"arch={arch}: cannot import {function} from {module_name} "
                              f"({error})") from None
        built = factory()
        if not isinstance(built, nn.Module):
            raise EvoregError(f"arch={arch} returned {type(built).__name__}, not a torch module")
        return built
    raise unknown_name("architecture", arch, ["auto", *MODELS, "package.module:function"])


def load_model_file(path: str | Path, arch: str = "auto", trust: bool = False,
                    input_shape: tuple[int, ...] = (1, 28, 28), classes: int = 10) -> nn.Module:
    """A model from ``path`` without running code from it unless ``trust`` (module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EvoregError(f"model file {path} not found")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise EvoregError(f"{path} is a safetensors file: pip install safetensors to read "
                              "it, or save it with torch.save(model.state_dict(), PATH)") from None
        return _with_architecture(load_file(str(path)), path, arch, input_shape, classes)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust:
            raise EvoregError(UNTRUSTED.format(path=path)) from None
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
        except (AttributeError, ModuleNotFoundError) as error:
            raise EvoregError(f"{path}: the pickled module's class cannot be imported here "
                              f"({error}); save its state_dict instead") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise EvoregError(f"{path} is not a torch file ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''})") from None
    if isinstance(loaded, nn.Module):
        return loaded
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # a training checkpoint
    if not (isinstance(loaded, dict) and loaded
            and all(isinstance(v, torch.Tensor) for v in loaded.values())):
        raise EvoregError(f"{path} holds {type(loaded).__name__}, neither a module nor a "
                          "state dict of tensors")
    return _with_architecture(loaded, path, arch, input_shape, classes)


def _with_architecture(state: dict[str, torch.Tensor], path: Path, arch: str,
                       input_shape: tuple[int, ...], classes: int) -> nn.Module:
    model = architecture(arch, input_shape, classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        expected = list(model.state_dict())
        raise EvoregError(
            f"{path}: its state dict does not fit arch={arch} ({str(error).splitlines()[1:2]}; "
            f"the file has {list(state)[:6]}, the architecture expects {expected[:6]}); pass "
            "--set arch=NAME (auto, " + ", ".join(MODELS) + ") or arch=package.module:function"
        ) from None
    return model.eval()


def preset_params(model: nn.Module, preset: str) -> list[str]:
    """``output-bias``: the last bias entry (the output layer's); ``bn-stats``: the running
    statistics of the last BatchNorm layer."""
    if preset == "output-bias":
        biases = [name for name, _ in model.named_parameters() if name.endswith("bias")]
        if not biases:
            raise EvoregError("preset output-bias: the model has no bias; name params=...")
        return [biases[-1]]
    if preset == "bn-stats":
        norms = [name for name, module in model.named_modules()
                 if isinstance(module, nn.modules.batchnorm._BatchNorm)
                 and module.running_mean is not None]
        if not norms:
            raise EvoregError("preset bn-stats: the model has no BatchNorm layer with running "
                              "statistics; name params=...")
        return [f"{norms[-1]}.running_mean", f"{norms[-1]}.running_var"]
    raise unknown_name("preset", preset, PRESETS)


def parse_costs(text: str, classes: int) -> torch.Tensor | None:
    if not text:
        return None
    try:
        matrix = torch.tensor(ast.literal_eval(text), dtype=torch.float64)
    except (ValueError, SyntaxError, TypeError):
        raise EvoregError(f"costs={text!r} is not a list of rows such as [[0, 1], [5, 0]]") \
            from None
    if matrix.shape != (classes, classes) or not bool(torch.isfinite(matrix).all()):
        raise EvoregError(f"costs must be {classes} x {classes} finite numbers (rows: true "
                          f"class, columns: predicted); got shape {tuple(matrix.shape)}")
    return matrix


def scenario_from_config(config: Config, device: torch.device | str = "cpu") -> Scenario:
    """The scenario a ``retrofit`` config describes: data, model, selection and loss."""
    splits = make_splits(config)
    if config.model:
        model = load_model_file(config.model, config.arch, config.trust_model,
                                tuple(splits.validation[0].shape[1:]), splits.classes)
    else:
        model = trained_classifier(config, splits)
    params: Any = config.params or preset_params(model, config.preset)
    return Scenario(model, params, config.loss, splits.validation, splits.test, device=device,
                    radius=config.radius, costs=parse_costs(config.costs, splits.classes),
                    cache_prefix=config.cache_prefix, threads=config.threads)


# --------------------------------------------------------------------------- several runs
@dataclass
class RetrofitRun:
    """One independent run: its seed, the recommended candidate and its losses."""

    seed: int
    vector: torch.Tensor
    validation_loss: float
    test_loss: float | None
    #: (evaluations, best validation loss so far) after each generation
    curve: list[tuple[float, float]]
    report: dict[str, Any]
    out_dir: Path | None = None


@dataclass
class RetrofitResult:
    """What ``evoreg.retrofit`` returns: the chosen run's aleph-values and the losses of the
    untouched and retrofitted model on validation and test."""

    values: dict[str, torch.Tensor | float]  #: the chosen values by label
    vector: torch.Tensor  #: the same, flat (the search space's candidate)
    validation_loss_before: float
    validation_loss_after: float
    test_loss_before: float | None
    test_loss_after: float | None
    runs: list[RetrofitRun]
    chosen: int  #: index of the run with the lowest validation loss
    model: nn.Module = dataclasses.field(repr=False)  #: a retrofitted copy of the model
    scenario: Scenario = dataclasses.field(repr=False)

    @property
    def test_gain(self) -> float | None:
        """Relative test improvement: (before - after) / before."""
        if self.test_loss_before is None or self.test_loss_after is None:
            return None
        before = self.test_loss_before
        return (before - self.test_loss_after) / before if before else 0.0

    def apply(self, model: nn.Module) -> nn.Module:
        """Write the chosen tensor values into ``model`` in place (hyperparameters are in
        ``values``: pass them to your scoring code)."""
        return self.scenario.apply_to(model, self.vector)


def run_seeds(seed: int, runs: int) -> list[int]:
    """Run 0 uses ``seed`` itself (so one run equals ``evoreg run retrofit --seed``); the
    others use seeds drawn from ``(seed, i)``, independent of every other seed's."""
    return [seed] + [int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
                     for i in range(1, runs)]


def retrofit_runs(
    make: Callable[[int], Retrofit],
    scenario: Scenario,
    optimizer: str,
    budget: int,
    *,
    runs: int = 1,
    seed: int = 0,
    out_dir: str | Path | None = None,
    resume: bool = False,
    optimizer_config: dict[str, Any] | None = None,
    progress: bool = False,
) -> RetrofitResult:
    """``runs`` independent runs of ``make(problem_seed)`` through ``evoreg.run``, the winner
    chosen on validation (the lowest validation loss of its recommendation; the first on a
    tie). Run ``i`` goes to ``out_dir/run-i`` (logs, checkpoints, ``resume``)."""
    from evoreg.runner import derive_seeds, run

    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise EvoregError(f"runs must be an int >= 1, got {runs!r}")
    done = []
    for i, run_seed in enumerate(run_seeds(seed, runs)):
        problem = make(derive_seeds(run_seed)[0])
        folder = None if out_dir is None else Path(out_dir) / f"run-{i}"
        result = run(problem, optimizer, budget, seed=run_seed, out_dir=folder, resume=resume,
                     optimizer_config=optimizer_config, progress=progress,
                     plot=folder is not None)
        report = result.report
        done.append(RetrofitRun(
            seed=run_seed, vector=torch.as_tensor(result.recommendation).detach().cpu().clone(),
            validation_loss=float(report["validation_loss"]),
            test_loss=report.get("test_loss"),
            curve=[(float(r["cost"]), float(r["best_loss"])) for r in result.log],
            report=report, out_dir=folder,
        ))
    chosen = min(range(len(done)), key=lambda i: done[i].validation_loss)
    best = done[chosen]
    scenario.load(best.vector)  # the working copy becomes the retrofitted model
    return RetrofitResult(
        values=scenario.values(best.vector), vector=best.vector,
        validation_loss_before=scenario.untouched["validation"],
        validation_loss_after=best.validation_loss,
        test_loss_before=scenario.untouched.get("test"), test_loss_after=best.test_loss,
        runs=done, chosen=chosen, model=scenario.model, scenario=scenario,
    )


def _describe_split(batches: list[Any]) -> str:
    return f"{len(batches)} batches, {sum(batch_size(b) for b in batches)} samples"


def retrofit(
    model: nn.Module,
    params: Any,
    loss: str | Callable[..., Any],
    val: Any,
    test: Any = None,
    optimizer: str = "ng:NGOpt",
    budget: int = 100,
    runs: int = 1,
    seed: int = 0,
    out_dir: str | Path | None = None,
    device: str = "auto",
    apply: bool = False,
    *,
    radius: float = 2.0,
    costs: Any = None,
    optimizer_config: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = False,
    cache_prefix: bool = True,
    threads: int | None = None,
) -> RetrofitResult:
    """Tune the aleph-parameters ``params`` of ``model`` to minimise ``loss`` on ``val``.

    Videau et al. (2024), "Evolutionary Retrofitting" (AfterLearnER): a black-box optimizer
    tunes a few parameters of a fully trained model on a validation split, with dozens to
    hundreds of evaluations; ``runs`` independent runs, the winner chosen on validation; the
    held-out ``test`` split is reported beside the untouched model.

    - ``model``: any ``torch.nn.Module``. It is not modified (the search works on a deep
      copy, also when a run fails midway) unless ``apply=True``, which writes the chosen
      values into it at the end. ``result.model`` is the retrofitted copy.
    - ``params``: state_dict names (``"fc2.bias"``), globs (``"*.bn.running_mean"``),
      indexed names (``"fc.weight[3:5]"`` or ``("fc.weight", slice(3, 5))``) and named
      hyperparameters of ``loss`` (keyword arguments it takes, e.g. ``temperature``): one,
      a list, or a dict to bounds ``(lower, upper)``. Default bounds: each value moves by
      ``radius`` (2) x max(1, RMS of its tensor); see ``evoreg.problems.aleph``.
    - ``loss``: ``"error"``, ``"cost"`` (with ``costs=`` a cost matrix), ``"macro-f1"``,
      ``"worst-recall"``, ``"ece"`` (classifiers; batches of ``(inputs, labels)``; scored
      over the whole split), or ``loss(model, batch, **hyperparameters) -> float``, averaged
      over the batches weighted by their size.
    - ``val``, ``test``: ``(inputs, targets)``, a ``Dataset`` or a ``DataLoader`` (read
      once and kept on ``device``).
    - ``budget``: evaluations of the loss on ``val`` per run.
    - ``out_dir``: run ``i`` writes its log and checkpoints to ``out_dir/run-i``; with
      ``resume=True`` a killed call continues where it stopped.

    Options: ``radius``, ``costs``, ``optimizer_config`` (e.g. ``{"popsize": 4}``),
    ``resume``, ``progress``, ``cache_prefix`` (run the unchanged leading modules of an
    ``nn.Sequential`` once per split; built-in losses only), ``threads`` (torch threads while
    scoring; default: torch's setting; 1 is fastest for small models on a busy CPU).

    Returns a ``RetrofitResult``: ``values`` (the chosen aleph-values by name),
    ``validation_loss_before/after``, ``test_loss_before/after``, ``test_gain``, ``runs``
    (each run's seed, losses and curve), ``chosen``, ``model`` and ``apply(model)``.
    """
    from evoreg.devices import resolve_device

    where = resolve_device(device)
    scenario = Scenario(model, params, loss, val, test, device=where, radius=radius,
                        costs=costs, cache_prefix=cache_prefix, threads=threads)
    config = {
        "model": f"<{type(model).__module__}.{type(model).__qualname__}>",
        "params": params if isinstance(params, str) else ", ".join(scenario.labels),
        "loss": scenario.loss_name, "radius": float(radius),
        "validation": _describe_split(scenario.splits["validation"]),
        "test": _describe_split(scenario.splits["test"]) if "test" in scenario.splits else "",
        "cache_prefix": cache_prefix,
    }

    def make(problem_seed: int) -> Retrofit:
        return RetrofitObjects(seed=problem_seed, device=where, scenario=scenario, **config)

    result = retrofit_runs(make, scenario, optimizer, budget, runs=runs, seed=seed,
                           out_dir=out_dir, resume=resume, optimizer_config=optimizer_config,
                           progress=progress)
    if apply:
        result.apply(model)
    return result


@hookimpl
def evoreg_register_problems(register):
    register("retrofit", Retrofit, family="retrofit")
