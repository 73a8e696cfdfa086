"""Class-occlusion transfer and robustness to input corruption (GO-EA Fig. 3).

The reference code (chiffa/ALIFE2023_GOEA-SGD, ``generate_oblvious_loaders([8, 9])``) trains
with some classes relabelled -1 and ignored by the loss (``CrossEntropyLoss(ignore_index=-1)``),
then reveals them and continues training. Here ``class_occlusion_transfer`` first trains
with the occluded classes' examples left out of the loss (the same thing;
``gradient_training`` on ``visible(train, occluded)``, full-batch Adam by default), then
continues on all classes with GO-EA (the ``goea`` plugin, one generation per update) or a
gradient method (one minibatch step per update), and records the accuracy on the revealed
classes, on the others and overall against updates.
``corruption_robustness`` is the test accuracy when a share of input pixels is dropped
(zeroed and the rest rescaled, as ``nn.Dropout`` on the image does). The reference's
robustness figures (``test_with_varying_dropout``) drop 10% of the input pixels together with
10, 25 or 50% of the hidden activations (its dropout layers); here the 10/25/50% is on the
input pixels alone, as the issue's figure asks, and hidden-activation dropout is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .network import Subject


def visible(subject: Subject, occluded: Sequence[int]) -> Subject:
    """``subject`` without the examples of the ``occluded`` classes."""
    keep = ~torch.isin(subject.labels, torch.as_tensor(list(occluded), device=subject.device))
    return subject.with_data(subject.images[keep], subject.labels[keep])


def only(subject: Subject, classes: Sequence[int]) -> Subject:
    keep = torch.isin(subject.labels, torch.as_tensor(list(classes), device=subject.device))
    return subject.with_data(subject.images[keep], subject.labels[keep])


def gradient_training(subject: Subject, x: torch.Tensor, *, steps: int, method: str = "adam",
                      learning_rate: float = 0.01, batch_size: int | None = None,
                      seed: int = 0) -> torch.Tensor:
    """``steps`` updates of ``method`` (adam or sgd) on minibatches of ``batch_size`` (None:
    the whole of ``subject``'s data) from ``x``."""
    generator = torch.Generator().manual_seed(seed)
    trainer = _Trainer(torch.as_tensor(x, dtype=torch.float32).flatten(), method, learning_rate)
    for _ in range(steps):
        trainer.step(subject, batch_size, generator)
    return trainer.weights.detach().clone()


def train_to_optimum(train: Subject, validation: Subject, x: torch.Tensor, *,
                     max_steps: int = 500, check_every: int = 10, method: str = "adam",
                     learning_rate: float = 0.01, batch_size: int | None = None,
                     seed: int = 0) -> tuple[torch.Tensor, dict[str, Any]]:
    """``method`` (adam or sgd) from ``x`` on minibatches of ``batch_size`` (None: full
    batch) for at most ``max_steps`` steps; the weights with the lowest validation loss,
    checked every ``check_every`` steps: an optimum in the sense of early stopping."""
    best_loss, best, best_step = float(validation.scores(x)[0][0]), x, 0
    weights = torch.as_tensor(x, dtype=torch.float32).flatten()
    state = _Trainer(weights, method, learning_rate)
    generator = torch.Generator().manual_seed(seed)
    for step in range(1, max_steps + 1):
        weights = state.step(train, batch_size, generator)
        if step % check_every == 0 or step == max_steps:
            loss = float(validation.scores(weights)[0][0])
            if loss < best_loss:
                best_loss, best, best_step = loss, weights.clone(), step
    return best, {"steps": best_step, "validation_loss": best_loss, "max_steps": max_steps,
                  "method": method, "learning_rate": learning_rate, "batch_size": batch_size}


class _Trainer:
    """A flat weight vector and a torch optimizer over it."""

    def __init__(self, x: torch.Tensor, method: str, learning_rate: float) -> None:
        self.weights = torch.nn.Parameter(x.detach().clone())
        if method == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam([self.weights],
                                                                     lr=learning_rate)
        elif method == "sgd":
            self.optimizer = torch.optim.SGD([self.weights], lr=learning_rate)
        else:
            raise ValueError(f"method must be adam or sgd, got {method!r}")

    def step(self, subject: Subject, batch_size: int | None,
             generator: torch.Generator) -> torch.Tensor:
        n = len(subject.labels)
        if batch_size is None or batch_size >= n:
            grad = subject.gradient(self.weights.detach())
        else:
            index = torch.randperm(n, generator=generator)[:batch_size].to(subject.device)
            grad = subject.gradient(self.weights.detach(), subject.images[index],
                                    subject.labels[index])
        self.optimizer.zero_grad()
        self.weights.grad = grad
        self.optimizer.step()
        return self.weights.detach()


def corruption_robustness(subject: Subject, x: torch.Tensor, *,
                          rates: Sequence[float] = (0.1, 0.25, 0.5), repeats: int = 3,
                          seed: int = 0) -> dict[str, Any]:
    """Accuracy and loss with a share ``rate`` of input pixels dropped, mean of ``repeats``."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    clean_loss, clean_accuracy = subject.scores(x)
    for rate in rates:
        accuracies, losses = [], []
        for _ in range(repeats):
            keep = torch.rand(subject.images.shape, generator=generator) >= rate
            images = subject.images * keep.to(subject.device) / (1 - rate)
            loss, accuracy = subject.with_data(images, subject.labels).scores(x)
            accuracies.append(float(accuracy[0]))
            losses.append(float(loss[0]))
        rows.append({"rate": rate, "accuracy": sum(accuracies) / repeats,
                     "loss": sum(losses) / repeats, "accuracies": accuracies})
    return {"clean_accuracy": float(clean_accuracy[0]), "clean_loss": float(clean_loss[0]),
            "corrupted": rows}


def _continue_goea(train: Subject, x: torch.Tensor, updates: int, popsize: int, sigma: float,
                   seed: int, record: Any) -> torch.Tensor:
    import evoreg

    space = evoreg.Real(len(x), init=x.clone(), sigma=sigma)
    optimizer = evoreg.make_optimizer("goea", space, popsize=popsize, sigma=sigma, seed=seed)
    done = 0
    while done < updates:
        pop = optimizer.ask()
        losses, _ = train.scores(pop.rows(0, len(pop)))
        optimizer.tell(pop, losses.float())
        if len(pop) > 1:  # the first ask is the parent alone: no update yet
            done += 1
            record(done, torch.as_tensor(optimizer.recommend()).flatten().cpu())
    return torch.as_tensor(optimizer.recommend()).flatten().cpu()


def class_occlusion_transfer(train: Subject, test: Subject, start: torch.Tensor, *,
                             occluded: Sequence[int] = (8, 9), pretrain_steps: int = 200,
                             pretrain_method: str = "adam", pretrain_learning_rate: float = 0.01,
                             continue_with: str = "goea", updates: int = 100,
                             record_every: int = 10, popsize: int = 20, sigma: float = 0.01,
                             learning_rate: float = 0.002, batch_size: int = 32,
                             corruption_rates: Sequence[float] = (0.1, 0.25, 0.5),
                             seed: int = 0, pretrained: torch.Tensor | None = None,
                             ) -> dict[str, Any]:
    """Pretrain with ``occluded`` classes out of the loss, reveal them, continue ``updates``
    updates with ``continue_with`` (goea, sgd or adam); accuracy on the revealed classes,
    the others and all, every ``record_every`` updates; corruption robustness before and
    after. ``pretrained``: skip the pretraining and start from these weights."""
    classes = sorted(set(train.labels.tolist()))
    revealed_test = only(test, occluded)
    others_test = visible(test, occluded)
    if pretrained is None:
        pretrained = gradient_training(visible(train, occluded), start, steps=pretrain_steps,
                                       method=pretrain_method,
                                       learning_rate=pretrain_learning_rate, seed=seed)
    trace: list[dict[str, Any]] = []

    def record(update: int, x: torch.Tensor) -> None:
        if update % record_every and update != updates:
            return
        trace.append({
            "update": update,
            "revealed_accuracy": float(revealed_test.scores(x)[1][0]),
            "other_accuracy": float(others_test.scores(x)[1][0]),
            "test_accuracy": float(test.scores(x)[1][0]),
            "train_loss": float(train.scores(x)[0][0]),
        })

    record(0, pretrained)
    if continue_with == "goea":
        final = _continue_goea(train, pretrained, updates, popsize, sigma, seed, record)
    elif continue_with in ("sgd", "adam"):
        x = pretrained
        for update in range(1, updates + 1):
            x = gradient_training(train, x, steps=1, method=continue_with,
                                  learning_rate=learning_rate, batch_size=batch_size,
                                  seed=seed * 1_000_003 + update)
            record(update, x)
        final = x
    else:
        raise ValueError(f"continue_with must be goea, sgd or adam, got {continue_with!r}")
    return {
        "analysis": "class-occlusion-transfer", "occluded": list(occluded),
        "classes": classes, "pretrain_steps": pretrain_steps, "pretrain_method": pretrain_method,
        "continue_with": continue_with, "updates": updates,
        "settings": ({"popsize": popsize, "sigma": sigma} if continue_with == "goea" else
                     {"learning_rate": learning_rate, "batch_size": batch_size}),
        "seed": seed, "trace": trace,
        "robustness_pretrained": corruption_robustness(test, pretrained,
                                                       rates=corruption_rates, seed=seed),
        "robustness_final": corruption_robustness(test, final, rates=corruption_rates,
                                                  seed=seed),
    }


def plot_transfer(results: Sequence[dict[str, Any]], path: str) -> None:
    """Accuracy on the revealed classes against updates, one line per continuation."""
    from evoreg.plots import _pyplot

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for result in results:
        trace = result["trace"]
        axis.plot([t["update"] for t in trace], [t["revealed_accuracy"] for t in trace],
                  marker="o", markersize=3, label=f"{result['continue_with']}: revealed")
        axis.plot([t["update"] for t in trace], [t["other_accuracy"] for t in trace],
                  linestyle="--", label=f"{result['continue_with']}: other classes")
    axis.set_xlabel("updates after the reveal")
    axis.set_ylabel("test accuracy")
    axis.set_title(f"classes {results[0]['occluded']} revealed")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_robustness(result: dict[str, Any], path: str) -> None:
    """Accuracy against the share of input pixels dropped."""
    from evoreg.plots import _pyplot

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 4))
    rates = [0.0] + [r["rate"] for r in result["corrupted"]]
    accuracies = [result["clean_accuracy"]] + [r["accuracy"] for r in result["corrupted"]]
    axis.plot(rates, accuracies, marker="o")
    axis.set_xlabel("share of input pixels dropped")
    axis.set_ylabel("accuracy")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
