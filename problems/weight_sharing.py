"""Learned weight sharing for multi-task learning: search which tasks share which weights.

Prellberg (2020), Evolving Deep Neural Networks, PhD thesis, ch. 8; Prellberg & Kramer,
"Learned Weight Sharing for Deep Multi-Task Learning by Natural Evolution Strategy and
Stochastic Gradient Descent", IJCNN 2020; code jprellberg/learned-weight-sharing.

T tasks each get a network of the DKL-MNIST base architecture: three blocks Conv(32, 3x3,
padding 1, no bias)-BatchNorm-ReLU-MaxPool(2) (28 -> 14 -> 7 -> 3), dense 288 -> 128 + ReLU,
dense 128 -> the task's classes. Each of the L = 4 layers but the last is a bank of K
versions (the heads are per task). An assignment is a ``Categorical`` of N = T x L slots of
size K, slot ``t * L + l`` saying which version task t uses in layer l.

The problem owns the weights theta (every bank and head) and trains them, so an optimizer of
the assignment stays a plain ask/tell NES (``nes``) and any ``Categorical`` optimizer
(``ng:*``, ``random-search``) can be plugged in. One ``evaluate(pop)`` is one iteration of
the thesis' hybrid:

1. every assignment of ``pop`` is scored on ONE batch of ``batch_size`` examples per task
   (BatchNorm in eval mode, as the reference's NES step): loss = cross-entropy averaged over
   the tasks;
2. theta takes one Adam step (lr 1e-3) on a second, fresh batch (BatchNorm in train mode)
   with the gradient averaged over lambda_theta = ``theta_samples`` assignments: the first
   ``theta_samples`` rows of ``pop`` (all when fewer). Those are samples of the optimizer's
   current distribution when it is NES; the reference draws them afresh from pi after its
   NES update, we use the ones just scored (pi has moved by eta at most).

Each layer version's gradient is divided by how often it was used in the step (samples x
tasks) and each head's by the number of samples, so every weight gets the mean of its
per-use gradients; for full and no sharing this is exactly the reference's normalisation.
The reference divides a learned layer by its expected use under pi (which lives in the
optimizer here), so it uses the counted use instead. Repeated sub-routes are computed once
(a task's layer-l activation depends only on its first l choices); in train mode a BatchNorm
computed for m samples updates its running statistics as m updates would.

``sharing``: ``learned`` (the space above), ``full`` (every task uses one version of each
layer: one bank entry) or ``none`` (task t uses its own version: T entries; ``versions`` is
then unused). The baselines keep a ``Categorical`` of size-1 slots so any optimizer runs;
as in the reference they take one Adam step per iteration on one batch (their lambda_theta
is 1: all samples are the same network), and the population is scored on that batch before
the step. The budget counts iterations (one ``evaluate`` = one theta step).

Data: the thesis' DKL-MNIST is ``tasks=emnist-digits,emnist-letters,kmnist`` (torchvision's
EMNIST and KMNIST files, ``data_root``/``download``). The offline default is
``digits,fashion-mnist``: scikit-learn's 8x8 digits scaled (bilinear) to 28x28, tested on
its fixed 20% hold-out (359 images), and Fashion-MNIST (Debian's dataset-fashion-mnist is
read in place), full 10k test set. Each task trains on ``train_size`` = 500 stratified
examples (fixed ``split_seed`` = 666, as the reference). ``digits-inverted`` (1 - x) makes a
second task from the digits alone (tests).

Where the reference code differs from the thesis text, this follows the code: torch's
default initialisation (``init=torch``; the thesis says He-uniform: ``init=he-uniform``),
BatchNorm momentum 0.1, NES scoring and the theta step on separate batches, the baselines'
single sample per step, EMNIST images left transposed. ``report`` gives the test error per
task, its mean over tasks, and the error pooled over all test images (what the reference
logs as its metric).
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from evoreg import Categorical, Evaluation, EvoregError, Population, Problem, hookimpl
from evoreg.config import bounded
from evoreg.errors import unknown_name
from evoreg.problems import datasets

LAYERS = ("conv1", "conv2", "conv3", "dense")  #: the shareable layers, in order (L = 4)
CHANNELS, HIDDEN, IMAGE = 32, 128, 28
FLAT = CHANNELS * 3 * 3  # 28 -> 14 -> 7 -> 3 after three 2x2 pools
TASKS = ("digits", "digits-inverted", "fashion-mnist", "mnist", "kmnist",
         "emnist-digits", "emnist-letters")
THESIS_TASKS = "emnist-digits,emnist-letters,kmnist"
Route = tuple[int, ...]  # one task's versions, layer by layer


@dataclass
class Config:
    #: comma-separated task list; offline default digits (8x8 scaled to 28x28) and
    #: fashion-mnist; thesis DKL-MNIST: emnist-digits,emnist-letters,kmnist
    tasks: str = "digits,fashion-mnist"
    #: learned (assignment searched), full (all tasks share every layer but the head), none
    sharing: Literal["learned", "full", "none"] = "learned"
    versions: int = bounded(3, ge=1)  #: K: versions per shareable layer (learned only)
    train_size: int = bounded(500, ge=1)  #: training examples per task (stratified subset)
    batch_size: int = bounded(16, ge=1)  #: examples per task in each batch
    theta_samples: int = bounded(8, ge=1)  #: lambda_theta: assignments averaged per step
    lr: float = bounded(1e-3, gt=0)  #: Adam learning rate of theta
    bn_momentum: float = bounded(0.1, gt=0, le=1)  #: BatchNorm running-statistics momentum
    #: torch (torch's default, as the reference code) or he-uniform (the thesis text)
    init: Literal["torch", "he-uniform"] = "torch"
    split_seed: int = 666  #: seed of the stratified training subsets (reference: 666)
    data_root: str = ""  #: folder of MNIST-like files ("": $EVOREG_DATA or ~/.cache/evoreg/data)
    download: bool = False  #: let torchvision download missing files (needs internet)

    def __post_init__(self) -> None:
        names = self.task_names
        for name in names:
            if name not in TASKS:
                raise unknown_name("task", name, TASKS)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tasks must be distinct task names, got {self.tasks!r}")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.tasks.split(",") if n.strip())


@dataclass
class Task:
    name: str
    train: tuple[torch.Tensor, torch.Tensor]  # images [n, 1, 28, 28], labels [n]
    test: tuple[torch.Tensor, torch.Tensor]
    classes: int


def load_task(name: str, train_size: int, split_seed: int, data_root: str,
              download: bool) -> Task:
    """Task ``name`` with a stratified training subset of ``train_size`` examples."""
    if name in ("digits", "digits-inverted"):
        data = datasets.load("digits")
    elif name in datasets.EMNIST_SPLITS:
        data = datasets.load_emnist(name, data_root or None, download)
    else:
        data = datasets.load(name, data_root or None, download)
    train_x, test_x = data.train_images, data.test_images
    if train_x.shape[-1] != IMAGE:  # the shared layers need one image size for all tasks
        train_x = F.interpolate(train_x, size=(IMAGE, IMAGE), mode="bilinear")
        test_x = F.interpolate(test_x, size=(IMAGE, IMAGE), mode="bilinear")
    if name == "digits-inverted":
        train_x, test_x = 1 - train_x, 1 - test_x
    labels = data.train_labels
    if train_size < len(labels):
        from sklearn.model_selection import train_test_split

        index, _ = train_test_split(range(len(labels)), train_size=train_size,
                                    stratify=labels.numpy(), random_state=split_seed)
        index = torch.tensor(sorted(index))
        train_x, labels = train_x[index], labels[index]
    return Task(name, (train_x, labels), (test_x, data.test_labels), data.classes)


class WeightSharing(Problem):
    """Which layers T tasks share (learned weight sharing, multi-task learning); loss = mean
    task cross-entropy of an assignment; the problem trains the weights (see the module)."""

    Config = Config
    citation = ("Prellberg (2020), Evolving Deep Neural Networks, PhD thesis, ch. 8; "
                "Prellberg & Kramer (2020), Learned Weight Sharing for Deep Multi-Task "
                "Learning by Natural Evolution Strategy and Stochastic Gradient Descent, IJCNN")
    budget_unit = "iterations"
    info_merge = {"theta_loss": "first"}

    def setup(self) -> None:
        c = self.config
        self.tasks = [load_task(n, c.train_size, c.split_seed, c.data_root, c.download)
                      for n in c.task_names]
        for task in self.tasks:
            task.train = tuple(v.to(self.device) for v in task.train)
            task.test = tuple(v.to(self.device) for v in task.test)
        t, layers = len(self.tasks), len(LAYERS)
        #: bank entries per layer: what the mode can use
        self.bank = {"learned": c.versions, "full": 1, "none": t}[c.sharing]
        self.space = Categorical((c.versions if c.sharing == "learned" else 1,) * (t * layers))
        self.params, self.buffers = self._init_theta(torch.Generator().manual_seed(self.seed))
        self.adam = torch.optim.Adam(list(self.params.values()), lr=c.lr)
        # The reference's per-task PermutationProvider: a fresh permutation per pass
        self.permutations = [torch.randperm(len(task.train[1]), generator=self.generator)
                             for task in self.tasks]
        self.positions = [0] * t
        self.iterations = 0

    # ----------------------------------------------------------------- theta
    def _init_theta(self, generator: torch.Generator
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        k = self.bank
        shapes = {f"{name}.weight": (k, CHANNELS, 1 if i == 0 else CHANNELS, 3, 3)
                  for i, name in enumerate(LAYERS[:3])}
        shapes["dense.weight"] = (k, HIDDEN, FLAT)
        for task_index, task in enumerate(self.tasks):
            shapes[f"head{task_index}.weight"] = (1, task.classes, HIDDEN)
        params: dict[str, torch.Tensor] = {}
        for name, shape in shapes.items():
            weight = torch.empty(shape)
            fan_in = math.prod(shape[2:])
            for w in weight:  # each version initialised like its own layer
                if self.config.init == "torch":
                    torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
                else:
                    torch.nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=generator)
            params[name] = weight
            layer = name.split(".")[0]
            if layer.startswith("conv"):  # no conv bias: BatchNorm's shift makes it redundant
                params[f"{layer}.bn_weight"] = torch.ones(k, CHANNELS)
                params[f"{layer}.bn_bias"] = torch.zeros(k, CHANNELS)
            else:
                bias = torch.zeros(shape[:2])
                if self.config.init == "torch":  # torch's Linear bias: U(-1/sqrt(fan_in), ..)
                    bias.uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in),
                                  generator=generator)
                params[f"{layer}.bias"] = bias
        params = {n: p.to(self.device).requires_grad_() for n, p in params.items()}
        buffers = {}
        for name in LAYERS[:3]:
            buffers[f"{name}.running_mean"] = torch.zeros(k, CHANNELS, device=self.device)
            buffers[f"{name}.running_var"] = torch.ones(k, CHANNELS, device=self.device)
        return params, buffers

    def routes(self, values: torch.Tensor) -> torch.Tensor:
        """``Tensor[n, T, L]``: the bank entry each task uses in each layer."""
        values = torch.as_tensor(values).long().cpu().reshape(len(values), -1)
        n, t, layers = len(values), len(self.tasks), len(LAYERS)
        if self.config.sharing == "learned":
            return values.view(n, t, layers)
        if self.config.sharing == "full":
            return torch.zeros(n, t, layers, dtype=torch.long)
        return torch.arange(t).view(1, t, 1).expand(n, t, layers).clone()

    def _layer(self, index: int, version: int, h: torch.Tensor, train: bool,
               uses: int) -> torch.Tensor:
        name, p = LAYERS[index], self.params
        if name == "dense":
            return F.relu(F.linear(h.flatten(1), p["dense.weight"][version],
                                   p["dense.bias"][version]))
        h = F.conv2d(h, p[f"{name}.weight"][version], padding=1)
        # m identical forwards would update the running statistics m times
        momentum = 1 - (1 - self.config.bn_momentum) ** uses
        h = F.batch_norm(h, self.buffers[f"{name}.running_mean"][version],
                         self.buffers[f"{name}.running_var"][version],
                         p[f"{name}.bn_weight"][version], p[f"{name}.bn_bias"][version],
                         training=train, momentum=momentum)
        return F.max_pool2d(F.relu(h), 2)

    def _logits(self, task: int, x: torch.Tensor, routes: list[Route],
                train: bool) -> dict[Route, torch.Tensor]:
        """Task ``task``'s logits of ``x`` for each distinct route, shared prefixes computed
        once."""
        uses = Counter(r[:depth] for r in routes for depth in range(1, len(LAYERS) + 1))
        memo: dict[Route, torch.Tensor] = {(): x}
        out = {}
        for route in dict.fromkeys(routes):
            for depth in range(1, len(LAYERS) + 1):
                if route[:depth] not in memo:
                    memo[route[:depth]] = self._layer(depth - 1, route[depth - 1],
                                                      memo[route[:depth - 1]], train,
                                                      uses[route[:depth]])
            out[route] = F.linear(memo[route], self.params[f"head{task}.weight"][0],
                                  self.params[f"head{task}.bias"][0])
        return out

    def _next_batch(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``batch_size`` examples of every task, each task walking its own reshuffled
        passes (a batch may straddle two passes, as in the reference)."""
        batch = []
        for t, task in enumerate(self.tasks):
            taken = []
            need = self.config.batch_size
            while need:
                perm, pos = self.permutations[t], self.positions[t]
                if pos == len(perm):
                    perm = torch.randperm(len(perm), generator=self.generator)
                    self.permutations[t], pos = perm, 0
                chunk = perm[pos:pos + need]
                taken.append(chunk)
                self.positions[t] = pos + len(chunk)
                need -= len(chunk)
            index = torch.cat(taken).to(self.device)
            batch.append((task.train[0][index], task.train[1][index]))
        return batch

    # ----------------------------------------------------------------- evaluate
    def evaluate(self, pop: Population, *, gradients: bool = False) -> Evaluation:
        if gradients:
            raise EvoregError("weight-sharing provides no gradients")
        if len(pop) == 0:
            return Evaluation(torch.zeros(0), cost=0)
        routes = self.routes(pop.rows(0, len(pop)))
        batch = self._next_batch()
        losses = self.score(routes, batch)
        if self.config.sharing == "learned":
            theta_loss = self.theta_step(routes[:self.config.theta_samples], self._next_batch())
        else:
            theta_loss = self.theta_step(routes[:1], batch)
        self.iterations += 1
        return Evaluation(losses, cost=1, info={"theta_loss": theta_loss})

    @torch.no_grad()
    def score(self, routes: torch.Tensor, batch: list[tuple[torch.Tensor, torch.Tensor]]
              ) -> torch.Tensor:
        """Each assignment's cross-entropy on ``batch``, averaged over the tasks (BatchNorm
        on its running statistics, so scoring changes nothing)."""
        losses = torch.zeros(len(routes))
        for t, (x, y) in enumerate(batch):
            task_routes = [tuple(r) for r in routes[:, t].tolist()]
            logits = self._logits(t, x, task_routes, train=False)
            loss = {r: float(F.cross_entropy(v, y)) for r, v in logits.items()}
            losses += torch.tensor([loss[r] for r in task_routes])
        return losses / len(batch)

    def theta_step(self, routes: torch.Tensor,
                   batch: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """One Adam step on the gradient averaged over ``routes`` (see the module docstring);
        returns the mean training loss of the step."""
        self.adam.zero_grad()
        total = torch.zeros((), device=self.device)
        for t, (x, y) in enumerate(batch):
            task_routes = [tuple(r) for r in routes[:, t].tolist()]
            counts = Counter(task_routes)
            for route, logits in self._logits(t, x, task_routes, train=True).items():
                total = total + counts[route] * F.cross_entropy(logits, y)
        total.backward()
        with torch.no_grad():
            samples = len(routes)
            for index, name in enumerate(LAYERS):
                uses = torch.bincount(routes[:, :, index].reshape(-1), minlength=self.bank)
                scale = (1 / uses.clamp(min=1).double()).float().to(self.device)
                for key in self._layer_keys(name):
                    grad = self.params[key].grad
                    grad.mul_(scale.view(-1, *[1] * (grad.dim() - 1)))
            for t in range(len(self.tasks)):
                for key in (f"head{t}.weight", f"head{t}.bias"):
                    self.params[key].grad.div_(samples)
        self.adam.step()
        return float(total.detach()) / (len(routes) * len(batch))

    @staticmethod
    def _layer_keys(name: str) -> tuple[str, ...]:
        if name == "dense":
            return ("dense.weight", "dense.bias")
        return (f"{name}.weight", f"{name}.bn_weight", f"{name}.bn_bias")

    # ----------------------------------------------------------------- report
    def network(self, x: Any, task: int) -> dict[str, torch.Tensor]:
        """Task ``task``'s weights under assignment ``x``: views into theta, so tasks that
        share a layer hold the very same tensor."""
        routes = self.routes(self.space.validate(torch.as_tensor(x).reshape(1, -1), 1))[0]
        weights = {}
        for index, name in enumerate(LAYERS):
            version = int(routes[task, index])
            for key in self._layer_keys(name):
                weights[key] = self.params[key][version]
        for key in (f"head{task}.weight", f"head{task}.bias"):
            weights[key.replace(f"head{task}", "head")] = self.params[key][0]
        return weights

    def sharing(self, x: Any) -> dict[str, list[list[str]]]:
        """Per layer, the groups of tasks that use one weight."""
        routes = self.routes(self.space.validate(torch.as_tensor(x).reshape(1, -1), 1))[0]
        pattern = {}
        for index, name in enumerate(LAYERS):
            groups: dict[int, list[str]] = {}
            for t, task in enumerate(self.tasks):
                groups.setdefault(int(routes[t, index]), []).append(task.name)
            pattern[name] = list(groups.values())
        return pattern

    @torch.no_grad()
    def report(self, x: Any) -> dict[str, Any]:
        """Test error and accuracy of assignment ``x`` per task, their mean over tasks, the
        error pooled over all test images, and the sharing structure."""
        pattern = self.sharing(x)
        routes = self.routes(torch.as_tensor(x).reshape(1, -1))[0]
        errors, wrong, total = {}, 0, 0
        for t, task in enumerate(self.tasks):
            route = tuple(routes[t].tolist())
            images, labels = task.test
            correct = 0
            for start in range(0, len(labels), 1000):
                logits = self._logits(t, images[start:start + 1000], [route], train=False)
                correct += int((logits[route].argmax(1) == labels[start:start + 1000]).sum())
            errors[task.name] = 1 - correct / len(labels)
            wrong, total = wrong + len(labels) - correct, total + len(labels)
        mean_error = sum(errors.values()) / len(errors)
        return {
            "test_error": mean_error,
            "test_accuracy": 1 - mean_error,
            "test_error_per_task": errors,
            "test_accuracy_per_task": {k: 1 - v for k, v in errors.items()},
            "test_error_pooled": wrong / total,
            "distinct_weights_per_layer": {k: len(v) for k, v in pattern.items()},
            "distinct_weights": sum(len(v) for v in pattern.values()),
            "sharing": pattern,
            "iterations": self.iterations,
        }

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "theta": {n: p.detach().clone() for n, p in self.params.items()},
            "buffers": {n: b.clone() for n, b in self.buffers.items()},
            "adam": copy.deepcopy(self.adam.state_dict()),
            "permutations": [p.clone() for p in self.permutations],
            "positions": list(self.positions),
            "iterations": self.iterations,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(state["theta"][name])
            for name, b in self.buffers.items():
                b.copy_(state["buffers"][name])
        self.adam.load_state_dict(state["adam"])
        self.permutations = [torch.as_tensor(p).long().cpu() for p in state["permutations"]]
        self.positions = [int(p) for p in state["positions"]]
        self.iterations = int(state["iterations"])


@hookimpl
def evoreg_register_problems(register):
    register("weight-sharing", WeightSharing, family="multi-task")
