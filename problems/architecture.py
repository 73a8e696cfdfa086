"""Search a ConvNet's architecture together with its weights (Lamarckian NAS).

Prellberg (2020), Evolving Deep Neural Networks, PhD thesis, ch. 7. A genome is an
architecture plus its weights, kept as plain data so checkpoints stay data::

    {"blocks": ((c, k, s), ...), "weights": {state_dict name: tensor}}

The network is a stack of blocks Conv(c, k, stride s, padding k//2)-BatchNorm-ReLU, then
global average pooling and one dense layer to the classes; c in ``channels``, k in {1, 3, 5},
s in {1, 2}, at most ``max_stride2`` stride-2 blocks. ``space.sample`` gives one block
(random c and k, stride 1, fresh weights); ``space.mutate`` applies one operator, drawn with
relative frequencies add block 3, remove block 3, add channels 2, remove channels 2, change
kernel 2, change stride 1, and redraws until the architecture is valid and was never
evaluated in this run (the history is part of the problem's state).

With ``inherit=True`` the child keeps every parent tensor whose shape is unchanged (BatchNorm
running statistics and the dense layer included) except those the thesis re-initialises:
a kernel change re-initialises that block's kernel, a channel change that block and the
next block's kernel, an added or removed block the new block and the next block's kernel.

``evaluate`` trains each genome ``epochs_per_eval`` epochs with Adam and returns the trained
genomes (``Evaluation.candidates``), so trained weights flow back to the optimizer; the loss
is minus the validation accuracy and the cost is counted in training epochs.

``encoding="categorical"`` searches the same architectures as a fixed-length
``Categorical`` vector, so that optimizers of categorical spaces (every ``ng:*``,
``random-search``) can search them; see :class:`ArchitectureSearch` and :func:`decode`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evoreg import Categorical, Evaluation, EvoregError, Genome, Population, Problem, hookimpl
from evoreg.config import bounded
from evoreg.problems import datasets

Block = tuple[int, int, int]  # (channels, kernel, stride)
Architecture = tuple[Block, ...]
KERNELS = (1, 3, 5)
#: Relative frequencies of the mutation operators (thesis ch. 7).
OPERATORS = {
    "add_block": 3,
    "remove_block": 3,
    "add_channels": 2,
    "remove_channels": 2,
    "change_kernel": 2,
    "change_stride": 1,
}
#: Mutations chained when every nearer architecture was evaluated already.
MAX_STEPS = 8
MAX_REDRAWS = 1000  # draws of one mutation before its neighbourhood counts as exhausted
STRIDES = (1, 2)
#: The categorical encoding: these variables per slot, in this order (choice 0 of
#: ``present`` is "absent"; the others index ``channels``, ``KERNELS``, ``STRIDES``).
SLOT = ("present", "channels", "kernel", "stride")


@dataclass
class Config:
    #: auto: fashion-mnist if its files are found (Debian's dataset-fashion-mnist), else digits
    dataset: Literal["auto", "digits", "mnist", "fashion-mnist", "kmnist"] = "auto"
    data_root: str = ""  #: folder of MNIST-like files ("": $EVOREG_DATA or ~/.cache/evoreg/data)
    download: bool = False  #: let torchvision download missing files (needs internet)
    train_size: int = bounded(0, ge=0)  #: training images used (0: all but the validation)
    val_size: int = bounded(0, ge=0)  #: validation images (0: 10% of the training set)
    channels: tuple[int, ...] = (16, 32, 64, 96, 128, 192, 256)  #: allowed c, ascending
    max_stride2: int = bounded(3, ge=0)  #: most stride-2 blocks
    epochs_per_eval: int = bounded(4, ge=1)  #: e: training epochs per evaluation
    batch_size: int = bounded(512, ge=1)  #: Adam minibatch
    lr: float = bounded(1e-3, gt=0)  #: Adam learning rate
    final_epochs: int = bounded(30, ge=0)  #: report(): further training before the test
    inherit: bool = True  #: genome: weight inheritance (False: children start from fresh weights)
    split_seed: int = 1  #: seed of the train/validation permutation
    #: genome: architecture + weights, mutated (inheritance); categorical: a fixed-length
    #: Categorical vector for any optimizer of categorical spaces, fresh weights every time
    encoding: Literal["genome", "categorical"] = "genome"
    #: categorical: slots (4 variables each); 8 = room for max_stride2=3 stride-2 blocks and as
    #: many stride-1 ones, a random vector has 4 blocks on average, and each stays CPU-cheap
    max_blocks: int = bounded(8, ge=1)

    def __post_init__(self) -> None:
        if not self.channels or list(self.channels) != sorted(set(self.channels)):
            raise ValueError(f"channels must be distinct and ascending, got {self.channels}")
        if min(self.channels) < 1:
            raise ValueError(f"channels must be positive, got {self.channels}")


@dataclass
class Inheritance:
    """Which parent tensors a child may take: ``source`` maps a child block index to the
    parent block it came from; ``fresh_blocks`` are re-initialised entirely and
    ``fresh_kernels`` only in their conv weight."""

    source: dict[int, int]
    fresh_blocks: set[int] = field(default_factory=set)
    fresh_kernels: set[int] = field(default_factory=set)


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c: int, k: int, s: int) -> None:
        super().__init__()
        # No conv bias: BatchNorm's shift makes it redundant.
        self.conv = nn.Conv2d(c_in, c, k, stride=s, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    """Blocks, global average pooling, one dense layer."""

    def __init__(self, blocks: Architecture, in_channels: int, classes: int) -> None:
        super().__init__()
        layers, c_in = [], in_channels
        for c, k, s in blocks:
            layers.append(ConvBlock(c_in, c, k, s))
            c_in = c
        self.blocks = nn.ModuleList(layers)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


def describe(blocks: Architecture, classes: int) -> str:
    """``c32k3s1-c64k5s2 | gap | fc10``."""
    stack = "-".join(f"c{c}k{k}s{s}" for c, k, s in blocks)
    return f"{stack} | gap | fc{classes}"


def flops_per_image(blocks: Architecture, in_shape: tuple[int, int, int], classes: int) -> int:
    """Multiply-adds of the convolutions and the dense layer for one image (BatchNorm, ReLU
    and pooling are left out, as is usual)."""
    c_in, h, w = in_shape
    total = 0
    for c, k, s in blocks:
        # padding k//2 with odd k: out = floor((n - 1) / s) + 1
        h, w = (h - 1) // s + 1, (w - 1) // s + 1
        total += h * w * c * c_in * k * k
        c_in = c
    return total + c_in * classes


def mutate_blocks(
    blocks: Architecture, operator: str, rng: np.random.Generator,
    channels: tuple[int, ...], max_stride2: int,
) -> tuple[Architecture, Inheritance] | None:
    """One application of ``operator`` at a random place, with its inheritance rule; None
    when the result is invalid (the caller redraws)."""
    n = len(blocks)
    same = {i: i for i in range(n)}
    if operator == "add_block":
        at = int(rng.integers(n + 1))
        new = (int(rng.choice(channels)), int(rng.choice(KERNELS)), 1)
        child = blocks[:at] + (new,) + blocks[at:]
        source = {i: (i if i < at else i - 1) for i in range(n + 1) if i != at}
        return child, Inheritance(source, {at}, {at + 1})
    if operator == "remove_block":
        if n == 1:
            return None
        at = int(rng.integers(n))
        child = blocks[:at] + blocks[at + 1:]
        source = {i: (i if i < at else i + 1) for i in range(n - 1)}
        return child, Inheritance(source, set(), {at})
    at = int(rng.integers(n))
    c, k, s = blocks[at]
    if operator in ("add_channels", "remove_channels"):
        larger = [x for x in channels if x > c]
        smaller = [x for x in channels if x < c]
        pool = larger[:1] if operator == "add_channels" else smaller[-1:]
        if not pool:
            return None
        block, inheritance = (pool[0], k, s), Inheritance(same, {at}, {at + 1})
    elif operator == "change_kernel":
        block = (c, int(rng.choice([x for x in KERNELS if x != k])), s)
        inheritance = Inheritance(same, set(), {at})
    elif operator == "change_stride":
        block, inheritance = (c, k, 3 - s), Inheritance(same)
    else:
        raise EvoregError(f"unknown mutation operator {operator!r}; one of {list(OPERATORS)}")
    child = blocks[:at] + (block,) + blocks[at + 1:]
    if sum(b[2] == 2 for b in child) > max_stride2:
        return None
    return child, inheritance


def categorical_sizes(channels: tuple[int, ...], max_blocks: int) -> tuple[int, ...]:
    """The ``Categorical`` sizes: per slot present (2), channels, kernel (3), stride (2)."""
    return (2, len(channels), len(KERNELS), len(STRIDES)) * max_blocks


def decode(row: Any, channels: tuple[int, ...], max_stride2: int) -> Architecture:
    """The blocks of a categorical vector: its present slots in order (absent slots' other
    choices are ignored). Stride-2 blocks beyond the first ``max_stride2`` become stride 1, so
    every vector means a valid architecture (a repair, not a penalty: the optimizer still
    learns from it). All slots absent give ``()``, which ``evaluate`` scores as the worst loss.
    """
    # a list, numpy array or tensor on any device (tolist copies it to the host)
    values = [int(v) for v in torch.as_tensor(row).reshape(-1).tolist()]
    blocks, strided = [], 0
    for at in range(0, len(values), len(SLOT)):
        present, c, k, s = values[at:at + len(SLOT)]
        if not present:
            continue
        stride = STRIDES[s]
        if stride == 2:
            strided += 1
            if strided > max_stride2:
                stride = 1
        blocks.append((channels[c], KERNELS[k], stride))
    return tuple(blocks)


def encode(blocks: Architecture, channels: tuple[int, ...], max_blocks: int) -> list[int]:
    """The categorical vector of ``blocks``: one present slot per block, in order, then absent
    slots (choices 0). ``decode(encode(b))`` is ``b`` for any ``b`` of at most
    ``max_stride2`` stride-2 blocks (more are repaired by ``decode``)."""
    if len(blocks) > max_blocks:
        raise EvoregError(f"{len(blocks)} blocks do not fit max_blocks={max_blocks}")
    row: list[int] = []
    for c, k, s in blocks:
        if c not in channels or k not in KERNELS or s not in STRIDES:
            raise EvoregError(f"block {(c, k, s)} is outside channels {channels}, kernels "
                              f"{KERNELS}, strides {STRIDES}")
        row += [1, channels.index(c), KERNELS.index(k), STRIDES.index(s)]
    return row + [0] * (len(SLOT) * (max_blocks - len(blocks)))


def inherit_weights(
    child: Net, parent: dict[str, torch.Tensor], inheritance: Inheritance
) -> None:
    """Copy into ``child`` every parent tensor the rule allows and whose shape matches."""
    state = child.state_dict()
    for name, tensor in state.items():
        parts = name.split(".")
        if parts[0] == "blocks":
            index = int(parts[1])
            if index not in inheritance.source or index in inheritance.fresh_blocks:
                continue
            if index in inheritance.fresh_kernels and parts[2] == "conv":
                continue
            parts[1] = str(inheritance.source[index])
        old = parent.get(".".join(parts))
        if old is not None and old.shape == tensor.shape:
            tensor.copy_(old)


class ArchitectureSearch(Problem):
    """Architecture + weights of a ConvNet; loss = -validation accuracy after training.

    encoding=genome (default): genomes {"blocks", "weights"}, mutated by the thesis'
    operators with weight inheritance (inherit=true); for genome optimizers (niching,
    random-search).

    encoding=categorical: a fixed-length Categorical vector, max_blocks slots of 4 variables
    (present/absent, channels index, kernel index into (1, 3, 5), stride index into (1, 2));
    the present slots in order are the blocks, stride-2 blocks beyond max_stride2 become
    stride 1, and an all-absent vector gets the worst loss 0 (charged epochs_per_eval like
    any candidate). Every ng:* optimizer and random-search can search it. Weights are NOT
    inherited in this encoding: every candidate is trained from a fresh initialisation,
    seeded from the problem's seed (reproducible), and report() trains the recommended
    architecture from fresh weights for epochs_per_eval + final_epochs epochs.
    """

    Config = Config
    citation = "Prellberg (2020), Evolving Deep Neural Networks, PhD thesis, ch. 7"
    budget_unit = "epochs"
    # Parts of a generation scored apart: the best of the parts, and the largest history.
    info_merge = {"validation_accuracy_best": "max", "architectures_seen": "max"}

    @property
    def candidate_cost(self) -> float:
        """Every candidate trains ``epochs_per_eval`` epochs (an empty categorical one is
        charged as much), so the runner can ask only what the budget of epochs leaves."""
        return float(self.config.epochs_per_eval)

    def setup(self) -> None:
        c = self.config
        self.dataset = c.dataset if c.dataset != "auto" else datasets.default_dataset(c.data_root)
        data = datasets.load(self.dataset, c.data_root or None, c.download)
        n = len(data.train_labels)
        val_size = c.val_size or n // 10
        train_size = c.train_size or n - val_size
        if val_size + train_size > n:
            raise EvoregError(f"train_size {train_size} + val_size {val_size} > the {n} "
                              f"training images of {self.dataset}")
        order = torch.from_numpy(np.random.RandomState(c.split_seed).permutation(n))
        validation, train = order[:val_size], order[val_size:val_size + train_size]
        device = self.device
        # Moved to the device once; minibatches are then indexed there.
        self.splits = {
            "train": (data.train_images[train].to(device), data.train_labels[train].to(device)),
            "validation": (data.train_images[validation].to(device),
                           data.train_labels[validation].to(device)),
            "test": (data.test_images.to(device), data.test_labels.to(device)),
        }
        self.in_shape = tuple(data.train_images.shape[1:])  # channels adapt: grey 1, RGB 3
        self.classes = data.classes
        self.history: set[Architecture] = set()
        if c.encoding == "categorical":
            self.space = Categorical(categorical_sizes(tuple(c.channels), c.max_blocks))
        else:
            self.space = Genome(sample=self.sample, mutate=self.mutate, describe=self.describe)

    # ----------------------------------------------------------------- genomes
    def build(self, blocks: Architecture) -> Net:
        return Net(blocks, self.in_shape[0], self.classes)

    def fresh(self, blocks: Architecture, rng: np.random.Generator) -> Net:
        """A randomly initialised network, torch's default init drawn from a seed of ``rng``
        (the optimizer's), so runs are reproducible."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**62)))
            return self.build(blocks)

    @staticmethod
    def genome(blocks: Architecture, net: nn.Module) -> dict[str, Any]:
        weights = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        return {"blocks": tuple(blocks), "weights": weights}

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One block, random c and k, stride 1, fresh weights."""
        blocks = ((int(rng.choice(self.config.channels)), int(rng.choice(KERNELS)), 1),)
        return self.genome(blocks, self.fresh(blocks, rng))

    def mutate(
        self, x: dict[str, Any], rng: np.random.Generator, operator: str | None = None
    ) -> dict[str, Any]:
        """A child of ``x`` by one operator (drawn by frequency unless given), never an
        architecture evaluated before; weights inherited as the module docstring says.

        The history holds evaluated architectures only, so two children handed out in one
        ask (and not yet evaluated) may coincide; the thesis' (1+1)-EA asks one at a time.
        ``operator`` fixed, only the position is redrawn (tests use it per operator)."""
        start, child = x, None
        for _ in range(MAX_STEPS):
            child = self._step(start, rng, operator, unseen=True)
            if child is not None or operator is not None:
                break
            # Every one-step neighbour has been evaluated (a small channel set runs out of
            # them): move through one of them, so the child is one mutation further away.
            start = self._step(start, rng, None, unseen=False)
            if start is None:
                break
        if child is None:
            raise EvoregError(f"no unseen valid mutation of {self.describe(x)} within "
                              f"{MAX_STEPS} chained mutations of {MAX_REDRAWS} draws each")
        return child

    def _step(
        self, x: dict[str, Any], rng: np.random.Generator, operator: str | None, unseen: bool
    ) -> dict[str, Any] | None:
        """One valid mutation of ``x`` (an unseen one if ``unseen``), or None."""
        blocks = architecture(x)
        names, weights = list(OPERATORS), np.array(list(OPERATORS.values()), dtype=float)
        for _ in range(MAX_REDRAWS):
            chosen = operator or str(rng.choice(names, p=weights / weights.sum()))
            drawn = mutate_blocks(blocks, chosen, rng, tuple(self.config.channels),
                                  self.config.max_stride2)
            if drawn is None or (unseen and drawn[0] in self.history):
                continue
            child_blocks, inheritance = drawn
            child = self.fresh(child_blocks, rng)
            if self.config.inherit:
                inherit_weights(child, x["weights"], inheritance)
            return self.genome(child_blocks, child)
        return None

    def describe(self, x: dict[str, Any]) -> str:
        return describe(architecture(x), self.classes)

    def decode(self, row: Any) -> Architecture:
        """The blocks of a categorical vector (see :func:`decode`)."""
        return decode(row, tuple(self.config.channels), self.config.max_stride2)

    def encode(self, blocks: Architecture) -> torch.Tensor:
        """The categorical vector of ``blocks`` (see :func:`encode`)."""
        return torch.tensor(encode(blocks, tuple(self.config.channels),
                                   self.config.max_blocks))

    def as_genome(self, x: Any, rng: np.random.Generator) -> dict[str, Any] | None:
        """A genome for ``x``: itself, or a categorical vector's blocks with fresh weights
        drawn from ``rng`` (None for no blocks)."""
        if isinstance(x, dict):
            return x
        blocks = self.decode(x)
        return self.genome(blocks, self.fresh(blocks, rng)) if blocks else None

    # ----------------------------------------------------------------- training
    def train(self, x: dict[str, Any], epochs: int, generator: torch.Generator,
              schedule: list[float] | None = None) -> Net:
        """``x``'s network after ``epochs`` epochs of Adam; ``schedule`` gives each epoch's
        learning rate (default: ``lr`` throughout)."""
        net = self.build(architecture(x))
        net.load_state_dict(x["weights"])
        net.to(self.device).train()
        adam = torch.optim.Adam(net.parameters(), lr=self.config.lr)
        images, labels = self.splits["train"]
        for epoch in range(epochs):
            if schedule is not None:
                for group in adam.param_groups:
                    group["lr"] = schedule[epoch]
            order = torch.randperm(len(labels), generator=generator).to(self.device)
            for start in range(0, len(order), self.config.batch_size):
                batch = order[start:start + self.config.batch_size]
                loss = F.cross_entropy(net(images[batch]), labels[batch])
                adam.zero_grad(set_to_none=True)
                loss.backward()
                adam.step()
        return net

    @torch.no_grad()
    def accuracy(self, net: nn.Module, split: str) -> float:
        net.eval()
        images, labels = self.splits[split]
        correct = 0
        for start in range(0, len(labels), 2048):
            logits = net(images[start:start + 2048])
            correct += int((logits.argmax(dim=1) == labels[start:start + 2048]).sum())
        return correct / max(len(labels), 1)

    def evaluate(self, pop: Population, *, gradients: bool = False) -> Evaluation:
        if gradients:
            raise EvoregError("architecture provides no gradients")
        if self.config.encoding == "categorical":
            return self.evaluate_categorical(pop)
        genomes = pop.rows(0, len(pop))
        losses, trained = [], []
        for x in genomes:
            net = self.train(x, self.config.epochs_per_eval, self.generator)
            losses.append(-self.accuracy(net, "validation"))
            trained.append(self.genome(architecture(x), net))
            self.history.add(architecture(x))
        epochs = len(genomes) * self.config.epochs_per_eval
        info = {"validation_accuracy_best": -min(losses), "architectures_seen": len(self.history)}
        return Evaluation(torch.tensor(losses), cost=epochs, info=info, candidates=trained)

    def evaluate_categorical(self, pop: Population) -> Evaluation:
        """Each vector decoded and trained from fresh weights (init seeds drawn from the
        problem's rng, minibatches from its generator: reproducible from its seed). No
        candidates come back: the optimizer's indices stay what it asked."""
        rows = pop.rows(0, len(pop))
        losses = []
        for row in rows:
            x = self.as_genome(row, self.rng)
            if x is None:
                losses.append(0.0)  # no blocks: the worst loss, accuracy 0
                continue
            net = self.train(x, self.config.epochs_per_eval, self.generator)
            losses.append(-self.accuracy(net, "validation"))
            self.history.add(architecture(x))
        # All-absent vectors are charged too: the budget stays n * epochs_per_eval, and an
        # optimizer stuck on them cannot run forever at no cost.
        epochs = len(rows) * self.config.epochs_per_eval
        info = {"validation_accuracy_best": -min(losses), "architectures_seen": len(self.history)}
        return Evaluation(torch.tensor(losses), cost=epochs, info=info)

    def report(self, x: dict[str, Any] | torch.Tensor) -> dict[str, Any]:
        """Test accuracy after ``final_epochs`` more epochs (lr ``lr``, then /10 after a third
        and /100 after two thirds: the thesis' 10/20/30 scaled), size and FLOPs. A categorical
        vector has no weights: its blocks are trained from fresh weights, ``epochs_per_eval``
        epochs at ``lr`` (as when evaluated) before those."""
        epochs = self.config.final_epochs
        lr = self.config.lr
        schedule = [lr if e < epochs / 3 else lr / 10 if e < 2 * epochs / 3 else lr / 100
                    for e in range(epochs)]
        if not isinstance(x, dict):
            # Its own seeds, like the generator below: the search's state does not move.
            genome = self.as_genome(x, np.random.default_rng(self.seed + 1))
            if genome is None:
                raise EvoregError("an all-absent categorical vector has no network to report")
            x = genome
            schedule = [lr] * self.config.epochs_per_eval + schedule
            epochs = len(schedule)
        # Its own generator: reporting does not move the search's random state.
        net = self.train(x, epochs, torch.Generator().manual_seed(self.seed + 1), schedule)
        blocks = architecture(x)
        return {
            "architecture": describe(blocks, self.classes),
            "validation_accuracy": self.accuracy(net, "validation"),
            "test_accuracy": self.accuracy(net, "test"),
            "parameters": sum(p.numel() for p in net.parameters()),
            "flops_per_image": flops_per_image(blocks, self.in_shape, self.classes),
            "final_epochs": self.config.final_epochs,
            "trained_epochs": epochs,  # categorical: from fresh weights, epochs_per_eval more
        }

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "history": set(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.history = {tuple(tuple(int(v) for v in b) for b in a) for a in state["history"]}


def architecture(x: dict[str, Any]) -> Architecture:
    """A genome's blocks as a hashable tuple of ``(c, k, s)`` tuples (a checkpoint may have
    turned them into lists)."""
    return tuple(tuple(int(v) for v in block) for block in x["blocks"])


@hookimpl
def evoreg_register_problems(register):
    register("architecture", ArchitectureSearch, family="architecture")
