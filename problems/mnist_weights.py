"""Evolve the weights of a classifier on MNIST-like images (the search space is every weight).

The problem of Prellberg's thesis (2020, ch. 5: LEEA over a population of 92k-weight MLPs,
code jprellberg/gpuea) and of Kucharavy et al. (ALIFE 2023: GO-EA on a 9,854-weight ConvNet,
code chiffa/ALIFE2023_GOEA-SGD). One ``evaluate`` call is one generation: ONE minibatch of
``batch_size`` training images is drawn for the whole population (``"full"``: the whole
training split), each candidate's loss on it is computed in one batched pass
(``evoreg.nets.PopulationForward`` scored by ``evoreg.problems.classification``). Minibatches
walk through reshuffled epochs.

``preset="paper"`` is GO-EA's reference setting in one switch: MNIST, the reference network
``convnet9854-sn`` (spectral norm; scored one candidate at a time in train mode, one power
iteration per 32-image forward pass, dropout 0.1 and input dropout 0.1 as the paper's text),
all 60,000 training images each generation (``train_on="train+validation"``) and torch's
default initialisation. Values set explicitly override the preset's.

Splits follow gpuea: the training set is permuted with ``numpy.random.RandomState(1)`` and
its last 10% held out for validation (54k / 6k / 10k on MNIST-like sets). The loss is
``cross-entropy`` or ``error-rate`` (which no gradient method can use). The problem provides
gradients, so the ``adam`` and ``sgd`` baselines train the same network on the same data.
Cost is counted in evaluations (one candidate on one minibatch); samples processed are logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from evoreg import Evaluation, EvoregError, Population, Problem, Real, hookimpl
from evoreg.config import bounded
from evoreg.nets import (
    PopulationForward,
    flatten_parameters,
    glorot_uniform_,
    glorot_uniform_population,
)
from evoreg.problems import datasets
from evoreg.problems.classification import chunked_scores, gradient_and_scores
from evoreg.problems.models import (
    MODELS,
    PAPER_DROPOUT,
    load_state_vector_,
    model_spec,
    state_vector,
)

DEFAULT_MODELS = {"digits": "mlp-digits"}  # every MNIST-like set: mlp92k


#: ``preset=paper``: the GO-EA reference's setting (values a user sets explicitly win)
PRESETS: dict[str, dict[str, Any]] = {
    "none": {"dataset": "digits", "model": "auto", "batch_size": 1024, "init": None,
             "train_on": "train", "dropout": 0.0, "input_dropout": 0.0,
             "forward_batch": None},
    "paper": {"dataset": "mnist", "model": "convnet9854-sn", "batch_size": "full",
              "init": "torch", "train_on": "train+validation", "dropout": PAPER_DROPOUT[0],
              "input_dropout": PAPER_DROPOUT[1], "forward_batch": 32},
}


@dataclass
class Config:
    #: none, or paper: GO-EA's reference setting (mnist, convnet9854-sn, all 60,000 training
    #: images each generation, torch init, the paper's dropout, 32-image forward passes)
    preset: Literal["none", "paper"] = "none"
    #: digits (scikit-learn, embedded), mnist, fashion-mnist, kmnist; None: the preset's
    dataset: Literal["digits", "mnist", "fashion-mnist", "kmnist"] | None = None
    #: mlp92k, convnet9854, convnet9854-sn, mlp-digits; auto: mlp-digits on digits, else mlp92k
    model: Literal["auto", "mlp92k", "convnet9854", "convnet9854-sn", "mlp-digits"] | None = None
    #: images per generation, or "full": the whole training set (None: 1024, paper: full)
    batch_size: int | Literal["full"] | None = bounded(None, ge=1)
    #: train (the split without the validation share) or train+validation (all the training
    #: images, as the GO-EA reference's 60,000; validation figures then are on seen images)
    train_on: Literal["train", "train+validation"] | None = None
    loss: Literal["cross-entropy", "error-rate"] = "cross-entropy"  #: error-rate: no gradient
    #: mean-centred (gpuea), half ((x-.5)/.5, GO-EA), none; auto: the model's own
    normalization: Literal["auto", "mean-centred", "half", "none"] = "auto"
    #: glorot (Glorot-uniform, zero biases, as gpuea) or torch (torch's default, as the GO-EA
    #: reference); None: torch for convnet9854-sn and preset paper, else glorot
    init: Literal["glorot", "torch"] | None = None
    #: convnet9854-sn: dropout before conv2-4 and the 196-24 layer, active while scoring as in
    #: the reference (train mode); the paper's text: 0.1, the released GO-EA runs: 0
    dropout: float | None = bounded(None, ge=0, lt=1)
    input_dropout: float | None = bounded(None, ge=0, lt=1)  #: convnet9854-sn: on the pixels
    #: convnet9854-sn: images per forward pass, one power iteration each (the reference's
    #: loader: 32); None: eval_chunk
    forward_batch: int | None = bounded(None, ge=1)
    #: share of the training set held out (gpuea: 0.1)
    validation_share: float = bounded(0.1, gt=0, lt=1)
    split_seed: int = 1  #: seed of the train/validation permutation (gpuea: 1)
    data_root: str = ""  #: folder of MNIST-like files ("": $EVOREG_DATA or ~/.cache/evoreg/data)
    download: bool = False  #: let torchvision download missing files (needs internet)
    #: population forward strategy: auto (measured), batched, vmap, loop
    strategy: Literal["auto", "batched", "vmap", "loop"] = "auto"
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"  #: tf32 and bf16 on CUDA only
    memory_budget_mb: int = bounded(1024, ge=1)  #: population forward chunk size limit
    eval_chunk: int = bounded(8192, ge=1)  #: images per pass when a whole split is scored

    def __post_init__(self) -> None:
        for key, value in PRESETS.get(self.preset, {}).items():
            if getattr(self, key) is None:
                setattr(self, key, value)


class MnistWeights(Problem):
    """Minimise a classifier's loss over all its weights; one shared minibatch a generation."""

    Config = Config
    citation = "Prellberg (2020), thesis ch. 5; Kucharavy, Guerraoui & Dolamic (2023), ALIFE"
    provides_gradients = True

    def setup(self) -> None:
        c = self.config
        self.model_name = c.model if c.model != "auto" else DEFAULT_MODELS.get(c.dataset, "mlp92k")
        spec = model_spec(self.model_name)
        data = datasets.load(c.dataset, c.data_root or None, c.download)
        if tuple(data.train_images.shape[1:]) != spec.input_shape:
            fits = [n for n, s in MODELS.items() if s.input_shape == data.train_images.shape[1:]]
            raise EvoregError(
                f"model {self.model_name} reads {spec.input_shape} images but {c.dataset} has "
                f"{tuple(data.train_images.shape[1:])}; models that fit: {', '.join(fits)}"
            )
        order = np.random.RandomState(c.split_seed).permutation(len(data.train_labels))
        split = int(len(order) * (1 - c.validation_share))
        train, validation = torch.from_numpy(order[:split]), torch.from_numpy(order[split:])
        if c.train_on == "train+validation":
            train = torch.from_numpy(order)
        normalize = self._normalizer(c.normalization, spec.normalization, data, train)
        device = self.device
        self.splits = {
            "train": (normalize(data.train_images[train]).to(device),
                      data.train_labels[train].to(device)),
            "validation": (normalize(data.train_images[validation]).to(device),
                           data.train_labels[validation].to(device)),
            "test": (normalize(data.test_images).to(device), data.test_labels.to(device)),
        }
        self.data_source = data.source
        self.stateful = spec.stateful
        self.init = c.init or ("torch" if spec.stateful else "glorot")
        if spec.stateful and self.init == "glorot":
            raise EvoregError(f"model {self.model_name} supports init='torch' only")
        self.model = self._build(data.classes).to(device).eval()
        self.population_forward = None if spec.stateful else PopulationForward(
            self.model, device=device, strategy=c.strategy,
            memory_budget=c.memory_budget_mb << 20, precision=c.precision,
        )
        init_generator = torch.Generator().manual_seed(self.seed)
        if self.init == "glorot":
            glorot_uniform_(self.model, init_generator)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                fresh = self._build(data.classes)
            self.model.load_state_dict(fresh.state_dict())
        initial = self._flatten(self.model).cpu()
        self.space = Real(
            len(initial),
            init=initial,
            sigma=0.01,
            sample_init=self._sample_init,
        )
        self.samples = 0
        self.order = torch.empty(0, dtype=torch.int64)
        self.cursor = 0

    def _build(self, classes: int):
        spec = model_spec(self.model_name)
        if not spec.stateful:
            return spec.build(classes)
        return spec.build(classes, dropout=self.config.dropout,
                          input_dropout=self.config.input_dropout)

    def _flatten(self, model: torch.nn.Module) -> torch.Tensor:
        """A candidate: the parameters, or the whole state of a stateful model."""
        return state_vector(model) if self.stateful else flatten_parameters(model)

    # ----------------------------------------------------------------- data
    @staticmethod
    def _normalizer(choice: str, model_default: str, data: Any, train: torch.Tensor):
        kind = model_default if choice == "auto" else choice
        if kind == "mean-centred":
            mean = data.train_images[train].mean(dim=0, keepdim=True)
            return lambda images: images - mean
        if kind == "half":
            return lambda images: (images - 0.5) / 0.5
        return lambda images: images

    def _sample_init(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.init == "glorot":
            return glorot_uniform_population(self.model, n, generator)
        rows = []
        seeds = torch.randint(0, 2**62, (n,), generator=generator)
        for seed in seeds.tolist():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                rows.append(self._flatten(self._build(int(self._classes))))
        return torch.stack(rows)

    @property
    def _classes(self) -> int:
        return self.model[-1].out_features

    @property
    def train_size(self) -> int:
        return len(self.splits["train"][1])

    def _minibatch(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.splits["train"]
        size = self.config.batch_size
        if size == "full" or size >= self.train_size:
            return images, labels
        if self.cursor + size > len(self.order):  # a new epoch, reshuffled
            self.order = torch.randperm(self.train_size, generator=self.generator)
            self.cursor = 0
        index = self.order[self.cursor : self.cursor + size].to(self.device)
        self.cursor += size
        return images[index], labels[index]

    # ----------------------------------------------------------------- scoring
    def evaluate(self, pop: Population, *, gradients: bool = False) -> Evaluation:
        images, labels = self._minibatch()
        n, batch = len(pop), len(labels)
        if gradients and self.stateful:
            losses, correct, grads = self._stateful_scores(pop, images, labels, gradients=True)
        elif gradients:
            losses, correct, grads = self._with_gradients(pop, images, labels)
        elif self.stateful:
            losses, correct, _ = self._stateful_scores(pop, images, labels)
            grads = None
        else:
            losses, correct = self._scores(pop, images, labels)
            grads = None
        self.samples += n * batch
        if self.config.loss == "error-rate":
            losses = 1.0 - correct.double() / batch
        info = {
            "samples": self.samples,
            "batch_accuracy_best": float(correct.max()) / batch,
        }
        return Evaluation(losses.float(), cost=n, info=info, gradients=grads)

    def _stateful_scores(self, pop: Any, images: torch.Tensor, labels: torch.Tensor, *,
                         gradients: bool = False, dropout: bool = True,
                         generator: torch.Generator | None = None):
        """Score a stateful model (convnet9854-sn) one candidate at a time, as the reference:
        the candidate's state (weights and power-iteration buffers) is loaded, the model runs
        in train mode over ``forward_batch``-image passes (one power iteration each, which
        updates the buffers during this evaluation only; dropout active if ``dropout``), and
        the candidate itself is left unchanged. Gradients cover the parameters; the buffers'
        entries are 0."""
        if gradients and self.config.loss == "error-rate":
            raise EvoregError(
                "loss='error-rate' has no gradient: gradient baselines need loss='cross-entropy'"
            )
        chunk = self.config.forward_batch or self.config.eval_chunk
        n = len(pop)
        rows = pop if isinstance(pop, torch.Tensor) else pop.rows(0, n)
        model = self.model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout) and not dropout:
                module.eval()
        params = dict(model.named_parameters())
        losses, correct, grads = [], [], []
        seeds = torch.randint(0, 2**62, (n,), generator=generator or self.generator).tolist()
        devices = [self.device] if torch.device(self.device).type == "cuda" else []
        for row, seed in zip(rows, seeds):
            load_state_vector_(model, row.to(self.device))
            model.zero_grad(set_to_none=True)
            loss_sum, hits = 0.0, 0
            with torch.random.fork_rng(devices=devices), torch.set_grad_enabled(gradients):
                torch.manual_seed(seed)  # dropout masks, reproducible under the problem's seed
                for start in range(0, len(labels), chunk):
                    inputs, targets = images[start:start + chunk], labels[start:start + chunk]
                    logits = model(inputs)
                    part = F.cross_entropy(logits, targets, reduction="sum")
                    if gradients:
                        part.backward()
                    loss_sum += float(part.detach())
                    hits += int((logits.argmax(dim=1) == targets).sum())
            losses.append(loss_sum / len(labels))
            correct.append(hits)
            if gradients:  # laid out as state_vector: parameters' gradients, buffers' zeros
                grads.append(torch.cat([
                    params[name].grad.reshape(-1) / len(labels)
                    if name in params and params[name].grad is not None
                    else torch.zeros(tensor.numel(), device=self.device)
                    for name, tensor in model.state_dict().items()
                ]))
        model.eval()
        return (torch.tensor(losses, dtype=torch.float64), torch.tensor(correct),
                torch.stack(grads) if gradients else None)

    def _scores(self, pop: Any, images: torch.Tensor, labels: torch.Tensor):
        """Mean cross-entropy and correct counts, in data chunks for large (full) batches."""
        return chunked_scores(self.population_forward, pop, images, labels,
                              self.config.eval_chunk)

    def _with_gradients(self, pop: Population, images: torch.Tensor, labels: torch.Tensor):
        if self.config.loss == "error-rate":
            raise EvoregError(
                "loss='error-rate' has no gradient: gradient baselines need loss='cross-entropy'"
            )
        rows = pop.rows(0, len(pop)).to(self.device)
        losses, correct, grads = [], [], []
        for row in rows:
            grad, loss, hits = gradient_and_scores(self.model, row, images, labels,
                                                   self.config.eval_chunk)
            losses.append(loss)
            correct.append(hits)
            grads.append(grad)
        return (torch.tensor(losses, dtype=torch.float64), torch.tensor(correct),
                torch.stack(grads))

    def report(self, x: Any) -> dict[str, float]:
        """Accuracy and cross-entropy of weights ``x`` on the train, validation and test splits."""
        weights = torch.as_tensor(x, dtype=torch.float32).reshape(1, -1).to(self.device)
        figures: dict[str, float] = {}
        for split, (images, labels) in self.splits.items():
            if self.stateful:  # power iteration as while scoring, without dropout
                loss, correct, _ = self._stateful_scores(
                    weights, images, labels, dropout=False, generator=torch.Generator())
            else:
                loss, correct = self._scores(weights, images, labels)
            figures[f"{split}_accuracy"] = float(correct[0]) / len(labels)
            figures[f"{split}_loss"] = float(loss[0])
        return figures

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "samples": self.samples, "order": self.order.clone(),
                "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.samples, self.order, self.cursor = state["samples"], state["order"], state["cursor"]


@hookimpl
def evoreg_register_problems(register):
    register("mnist-weights", MnistWeights, family="weights")
