"""The GO-EA paper's qualitative findings as checkable figures, on digits or Fashion-MNIST.

Kucharavy, Guerraoui & Dolamic, "Evolutionary Algorithms in the Light of SGD" (ALIFE 2023;
code chiffa/ALIFE2023_GOEA-SGD) analyse random updates of a small network. This script runs
``evoreg.analysis`` on ``mnist-weights``' network (digits: the 2,410-weight MLP;
Fashion-MNIST: the 92k MLP, or ``--model convnet9854``) at three points:

- ``start``: the problem's initial (random) weights;
- ``transfer``: the weights after ``--pretrain-steps`` full-batch Adam steps with classes
  8 and 9 left out of the loss (the reference's occluded classes), at the moment they are
  revealed;
- ``optimum``: minibatch SGD on all classes as the reference trains (batch 32; lr 0.1 here,
  the reference's 0.002 being for 10 epochs of 60k images), at most ``--optimum-steps`` steps,
  the weights of lowest validation loss (checked every 40 steps). A point trained on to zero
  training loss is a different place: after 500 full-batch Adam steps on digits (train loss
  0.001-0.005) none of 300 random updates of std 0.01 improved the loss, so the angles of
  improving updates cannot be compared there.

At each: update angles (``--samples`` random updates of std ``--sigma``, GO-EA's 0.01; KS test
of the angles among improving updates against those among all), the random-update sweep
(P(beneficial / neutral / deleterious) by edit distance), the flatness profile (5
filter-normalised directions) and SGD minibatch-vs-full-batch update angles (start and
optimum). Then the cap probability table, and the class-occlusion transfer continued by GO-EA
and by SGD (batch 32) from the same transfer start, with robustness to 10/25/50% input
corruption. Analyses use the first ``--train-limit`` training images (all of digits').

Checked (the paper's findings): (1) at the optimum, improving and random update angles are
indistinguishable by KS (p > 0.05); (2) the cap probability at alpha = 45 degrees is below
1e-3 by n = 100; (3) P(beneficial) at edit distance ``--sigma`` is lower at the optimum than
at the random start (the transfer start is reported between them).

Writes ``goea_analyses.json`` and ``goea_analyses.png`` (``goea_analyses_<dataset>.*`` for a
data set other than digits) to ``--out`` and the benchmark's line in ``docs/benchmarks.md``
(run another data set with ``EVOREG_BENCH_LABEL=<dataset>`` to give it its own line).

    .venv/bin/python benchmarks/goea_analyses.py                 # digits, CPU, about 1 min
    .venv/bin/python benchmarks/goea_analyses.py --quick         # smoke run
    EVOREG_BENCH_LABEL=fashion-mnist .venv/bin/python benchmarks/goea_analyses.py \\
        --dataset fashion-mnist --train-limit 5000          # 92k-weight MLP, about 10 min
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import evoreg  # first: it enables torch's huge-page allocations

# isort: split
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    add_output_options,
    doc_line,
    relative_to_root,
    run_info,
    update_doc_table,
    write_result,
)

from evoreg.analysis.angles import sgd_angles, update_angles  # noqa: E402
from evoreg.analysis.cap import cap_probability, cap_table  # noqa: E402
from evoreg.analysis.flatness import flatness_profile  # noqa: E402
from evoreg.analysis.network import Subject  # noqa: E402
from evoreg.analysis.transfer import (  # noqa: E402
    class_occlusion_transfer,
    gradient_training,
    train_to_optimum,
    visible,
)
from evoreg.analysis.updates import update_sweep  # noqa: E402

NAME = "goea_analyses"
OCCLUDED = (8, 9)
QUICK = {"samples": 30, "sweep_samples": 20, "optimum_steps": 200, "pretrain_steps": 30,
         "transfer_updates": 20, "train_limit": 400}
DEFAULTS = {"samples": 1000, "sweep_samples": 100, "optimum_steps": 3000, "pretrain_steps": 200,
            "transfer_updates": 300, "train_limit": 0}
DISTANCES = [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1]
GOAL = ("at the optimum improving vs all update angles KS p > 0.05; cap(n=100, 45 deg) < 1e-3; "
        "P(beneficial) at sigma lower at the optimum than at the random start")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist",
                                                                 "mnist", "kmnist"])
    parser.add_argument("--model", default="auto")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--train-limit", type=int, help="training images analysed (0: all)")
    parser.add_argument("--samples", type=int, help="random updates for the angles")
    parser.add_argument("--sweep-samples", type=int, help="random updates per edit distance")
    parser.add_argument("--sigma", type=float, default=0.01, help="GO-EA's edit distance")
    parser.add_argument("--optimum-steps", type=int,
                        help="most SGD steps (batch 32, lr 0.1), early-stopped")
    parser.add_argument("--pretrain-steps", type=int, help="the same, classes 8, 9 occluded")
    parser.add_argument("--transfer-updates", type=int, help="updates after the reveal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    add_output_options(parser, str(RESULTS), QUICK)
    args = parser.parse_args()
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
        if getattr(args, key) < (0 if key == "train_limit" else 1):
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    return args


def analyse_point(name: str, train: Subject, x: torch.Tensor, args: argparse.Namespace,
                  sgd: bool) -> dict[str, Any]:
    started = time.perf_counter()
    loss, accuracy = train.scores(x)
    result: dict[str, Any] = {
        "train_loss": float(loss[0]), "train_accuracy": float(accuracy[0]),
        "angles": update_angles(train, x, samples=args.samples, sigma=args.sigma,
                                seed=args.seed + 1),
        "sweep": update_sweep(train, x, distances=DISTANCES, samples=args.sweep_samples,
                              seed=args.seed + 2),
        "flatness": flatness_profile(train, x, max_step=1.0, points=11, directions=5,
                                     seed=args.seed + 3),
    }
    if sgd:
        result["sgd_angles"] = sgd_angles(train, x, batch_sizes=[1, 4, 16, 64, 256, 1024],
                                          batches=10, seed=args.seed + 4)
    result["wall_time_s"] = time.perf_counter() - started
    angles = result["angles"]
    print(f"{name}: train loss {loss.item():.4f}, accuracy {accuracy.item():.4f}; "
          f"{angles['improving']}/{angles['samples']} updates improve, KS p = "
          f"{angles['ks']['p_value']}; {result['wall_time_s']:.1f} s", flush=True)
    return result


def ks(point: dict[str, Any]) -> str:
    p = point["angles"]["ks"]["p_value"]
    return "n/a" if p is None else f"{p:.2g}"


def pairs(point: dict[str, Any]) -> int:
    return point["angles"]["angles_improving"]["count"]


def p_beneficial(point: dict[str, Any], sigma: float) -> float:
    rows = point["sweep"]["whole"]
    return min(rows, key=lambda r: abs(r["edit_distance"] - sigma))["p_beneficial"]


def plot(data: dict[str, Any], path: Path) -> None:
    points = data["points"]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    ax = axes[0, 0]
    for name, point in points.items():
        a = point["angles"]
        centres = np.array(a["histogram_bins_degrees"][:-1]) + 0.5
        if a["histogram_improving"] and sum(a["histogram_improving"]):
            counts = np.array(a["histogram_improving"])
            p = a["ks"]["p_value"]
            ax.plot(centres, counts / counts.sum(), label=f"{name}: improving "
                    f"(KS p={'n/a' if p is None else f'{p:.2g}'})")
    counts = np.array(points["optimum"]["angles"]["histogram_all"])
    ax.plot(centres, counts / counts.sum(), "k--", label="optimum: all")
    ax.set_xlim(75, 105)
    ax.set_xlabel("angle between updates (deg)")
    ax.set_title("update angles")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for name, point in points.items():
        rows = point["sweep"]["whole"]
        ax.semilogx([r["edit_distance"] for r in rows], [r["p_beneficial"] for r in rows],
                    "o-", label=name)
    ax.set_xlabel("edit distance (std per weight)")
    ax.set_ylabel("P(beneficial)")
    ax.set_title("random-update sweep")
    ax.legend()
    ax = axes[0, 2]
    for name, point in points.items():
        flat = point["flatness"]
        ax.errorbar(flat["steps"], flat["loss_mean"], flat["loss_sem"], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step (filter-normalised)")
    ax.set_ylabel("train loss")
    ax.set_title("flatness (5 directions)")
    ax.legend()
    ax = axes[1, 0]
    cap = data["cap"]
    table = np.array(cap["probability"])
    for j, angle in enumerate(cap["angles_degrees"]):
        ax.loglog(cap["dimensions"], np.maximum(table[:, j], 1e-300), label=f"{angle:g} deg")
    ax.axhline(1e-3, color="0.6", linestyle=":")
    ax.set_ylim(1e-30, 1)
    ax.set_xlabel("dimensions n")
    ax.set_title("cap probability")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    for result in data["transfer"]:
        trace = result["trace"]
        ax.plot([t["update"] for t in trace], [t["revealed_accuracy"] for t in trace], "o-",
                markersize=3, label=f"{result['continue_with']}: classes 8, 9")
        ax.plot([t["update"] for t in trace], [t["other_accuracy"] for t in trace], "--",
                label=f"{result['continue_with']}: others")
    ax.set_xlabel("updates after the reveal")
    ax.set_ylabel("test accuracy")
    ax.set_title("class-occlusion transfer")
    ax.legend(fontsize=7)
    ax = axes[1, 2]
    for name, point in points.items():
        if "sgd_angles" in point:
            rows = point["sgd_angles"]["batch_sizes"]
            ax.errorbar([r["batch_size"] for r in rows], [r["mean"] for r in rows],
                        [r["std"] for r in rows], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("SGD batch size")
    ax.set_ylabel("angle to full-batch update (deg)")
    ax.set_title("SGD update angles")
    ax.legend()
    fig.suptitle(f"GO-EA analyses: {data['config']['dataset']}, "
                 f"{data['config']['dimensions']} weights")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    problem = evoreg.make_problem("mnist-weights", seed=args.seed, device=args.device,
                                  dataset=args.dataset, model=args.model,
                                  data_root=args.data_root)
    train = Subject.from_problem(problem, "train", args.train_limit or None)
    test = Subject.from_problem(problem, "test")
    start = problem.space.initial().flatten().cpu()
    validation = Subject.from_problem(problem, "validation")
    optimum, stopping = train_to_optimum(train, validation, start, max_steps=args.optimum_steps,
                                         check_every=40, method="sgd", learning_rate=0.1,
                                         batch_size=32, seed=args.seed)
    transfer = gradient_training(visible(train, OCCLUDED), start, steps=args.pretrain_steps,
                                 learning_rate=0.01)
    points = {
        "start": analyse_point("start", train, start, args, sgd=True),
        "transfer": analyse_point("transfer", train, transfer, args, sgd=False),
        "optimum": analyse_point("optimum", train, optimum, args, sgd=True),
    }
    dims = sorted({2, 5, 10, 20, 50, 100, 200, 1000, 10000, len(start)})
    cap = cap_table(dims, [15.0, 30.0, 45.0, 60.0, 75.0])
    transfers = [
        class_occlusion_transfer(train, test, start, occluded=OCCLUDED, continue_with=method,
                                 updates=args.transfer_updates,
                                 record_every=max(1, args.transfer_updates // 10),
                                 sigma=args.sigma, learning_rate=0.01, batch_size=32,
                                 seed=args.seed, pretrained=transfer)
        for method in ("goea", "sgd")
    ]
    for result in transfers:
        last = result["trace"][-1]
        print(f"transfer, {result['continue_with']}: revealed classes "
              f"{result['trace'][0]['revealed_accuracy']:.3f} -> "
              f"{last['revealed_accuracy']:.3f} after {last['update']} updates", flush=True)
    wall = time.perf_counter() - started

    ks_p = points["optimum"]["angles"]["ks"]["p_value"]
    cap_45_100 = cap_probability(100, 45.0)
    beneficial = {name: p_beneficial(point, args.sigma) for name, point in points.items()}
    checks = {
        "ks_optimum_p_above_0.05": ks_p is not None and ks_p > 0.05,
        "cap_45deg_n100_below_1e-3": cap_45_100 < 1e-3,
        "p_beneficial_start_above_optimum": beneficial["start"] > beneficial["optimum"],
    }
    met = all(checks.values())
    info = run_info(args.device)
    data = {
        "benchmark": NAME,
        **info,
        "config": {"dataset": args.dataset, "model": problem.model_name,
                   "dimensions": len(start), "train_images": len(train.labels),
                   "test_images": len(test.labels), "samples": args.samples,
                   "sweep_samples": args.sweep_samples, "sigma": args.sigma,
                   "distances": DISTANCES, "optimum_steps": args.optimum_steps,
                   "pretrain_steps": args.pretrain_steps, "occluded": list(OCCLUDED),
                   "transfer_updates": args.transfer_updates, "seed": args.seed,
                   "threads": args.threads, "quick": args.quick},
        "early_stopping": stopping,
        "points": points,
        "cap": cap,
        "transfer": transfers,
        "figures": {"ks_optimum_p": ks_p,
                    "improving_at_optimum": points["optimum"]["angles"]["improving"],
                    "cap_45deg_n100": cap_45_100,
                    "p_beneficial_at_sigma": beneficial},
        "checks": checks,
        "wall_time_s": wall,
        "goal": {"text": GOAL, "met": met},
    }
    out = Path(args.out)
    name = NAME if args.dataset == "digits" else f"{NAME}_{args.dataset}"
    path = write_result(data, out, name)
    plot(data, out / f"{name}.png")
    goea, sgd = transfers
    figure = (
        f"{args.dataset}, {problem.model_name} ({len(start)} weights), {len(train.labels)} "
        f"train images: optimum KS p = {'n/a' if ks_p is None else f'{ks_p:.3g}'} "
        f"({points['optimum']['angles']['improving']}/{args.samples} updates improve, "
        f"{pairs(points['optimum'])} pairs; at the start p = {ks(points['start'])}, at the "
        f"transfer start {ks(points['transfer'])}, with "
        f"{points['start']['angles']['improving']} and "
        f"{points['transfer']['angles']['improving']} improving); "
        f"cap(100, 45 deg) = {cap_45_100:.2g}; P(beneficial) at sigma {args.sigma:g}: "
        f"start {beneficial['start']:.2f}, transfer {beneficial['transfer']:.2f}, optimum "
        f"{beneficial['optimum']:.2f}; revealed classes after {args.transfer_updates} "
        f"updates: goea {goea['trace'][-1]['revealed_accuracy']:.2f}, sgd "
        f"{sgd['trace'][-1]['revealed_accuracy']:.2f}; {wall / 60:.1f} min"
    )
    print(figure)
    print("checks: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    print(f"wrote {relative_to_root(path)}")
    if args.doc and not args.quick:
        update_doc_table(doc_line(NAME, info, figure, goal=GOAL, met="yes" if met else "no"))


if __name__ == "__main__":
    main()
