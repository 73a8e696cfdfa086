"""Population evaluation throughput: every strategy of ``PopulationForward`` against matmul.

Two workloads of the papers evoreg reproduces, timed in ONE run with interleaved repeats:

- ``mlp92k`` (Prellberg 2020, ch. 5: LEEA's 92k-weight MLP), population 1000, batch 512;
- ``convnet9854`` (Kucharavy et al. 2023: GO-EA's ConvNet), population 20, batch 2000.

For each: one call of the population forward scored by cross-entropy and correct counts
(``evoreg.problems.classification``: what ``mnist-weights`` computes; the whole population
on one batch) with each strategy forced (``batched``, ``vmap``, ``loop``) and with ``auto`` (what a
user gets: the fastest, measured on its first call). Throughput is candidate-samples per
second and GFLOP/s, FLOPs counted analytically as 2 x the multiply-adds of the Linear and
Conv2d layers per candidate-sample. The reference is the same machine's fp32 matmul
(``torch.mm`` of two square matrices), timed in the same run between the evaluations.
Ratios (to matmul, to the loop) are medians of per-repeat ratios. Inputs are random normal
images and random labels: the values do not change the work. Goals on a CPU: mlp92k with
``auto`` at >= 70% of matmul GFLOP/s; no model slower with ``auto`` than with the loop.
Writes ``benchmarks/results/eval_throughput.json`` and the benchmark's line in
``docs/benchmarks.md``.

    .venv/bin/python benchmarks/eval_throughput.py            # the full run
    .venv/bin/python benchmarks/eval_throughput.py --quick    # smoke run, small sizes
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import evoreg  # noqa: F401  first: it enables torch's huge-page allocations, read at torch's first use

# isort: split
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    add_output_options,
    doc_line,
    fill_sizes,
    median,
    relative_to_root,
    run_info,
    synchronize,
    time_matmul,
    update_doc_table,
    write_result,
)

from evoreg.devices import resolve_device  # noqa: E402
from evoreg.nets import PopulationForward, glorot_uniform_population  # noqa: E402
from evoreg.problems.classification import cross_entropy_and_correct  # noqa: E402
from evoreg.problems.models import build_model, model_spec  # noqa: E402

NAME = "eval_throughput"
GOAL_SHARE = 0.70  # mlp92k's auto GFLOP/s at least this share of matmul's
STRATEGIES = ("auto", "batched", "vmap", "loop")


@dataclass
class Args:
    mlp_popsize: int = 1000  #: mlp92k candidates per call
    mlp_batch: int = 512  #: mlp92k samples per call
    conv_popsize: int = 20  #: convnet9854 candidates per call
    conv_batch: int = 2000  #: convnet9854 samples per call
    repeats: int = 5  #: interleaved repeats; figures are medians over them
    matmul_size: int = 2048  #: side of the square fp32 matmul reference
    matmuls: int = 3  #: matmuls per repeat (each timed; the median is the repeat's figure)
    memory_budget_mb: int = 1024  #: the forwards' memory budget (their default: 1 GiB)
    seed: int = 0
    threads: int | None = None  #: torch.set_num_threads; default: torch's own
    device: str = "auto"
    quick: bool = False
    out: str = str(RESULTS)
    doc: bool = True


QUICK = {"mlp_popsize": 8, "mlp_batch": 16, "conv_popsize": 2, "conv_batch": 8, "repeats": 2,
         "matmul_size": 256}


def parse_args(argv: list[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for key in ("mlp_popsize", "mlp_batch", "conv_popsize", "conv_batch", "repeats",
                "matmul_size"):
        parser.add_argument(f"--{key.replace('_', '-')}", type=int,
                            help=f"default {getattr(defaults, key)}")
    parser.add_argument("--matmuls", type=int, default=defaults.matmuls)
    parser.add_argument("--memory-budget-mb", type=int, default=defaults.memory_budget_mb)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu or cuda")
    add_output_options(parser, defaults.out, QUICK)
    parsed = vars(parser.parse_args(argv))
    fill_sizes(parser, parsed, QUICK, defaults)
    return Args(**parsed)


# --------------------------------------------------------------------------- FLOPs
def flops_per_sample(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """2 x multiply-adds of the Linear and Conv2d layers for one sample of one candidate."""
    macs = 0

    def count(module, _inputs, output):
        nonlocal macs
        if isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.weight[0, 0].numel()
            macs += output[0].numel() * per_output

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for hook in hooks:
        hook.remove()
    return 2 * macs


# --------------------------------------------------------------------------- workloads
class Workload:
    """One model, its population and data batch, and one population forward per strategy."""

    def __init__(self, name: str, popsize: int, batch: int, args: Args, device: torch.device):
        self.name, self.popsize, self.batch = name, popsize, batch
        spec = model_spec(name)
        model = build_model(name)
        generator = torch.Generator().manual_seed(args.seed)
        self.flops_per_sample = flops_per_sample(model, spec.input_shape)
        self.population = glorot_uniform_population(model, popsize, generator).to(device)
        self.inputs = torch.randn(batch, *spec.input_shape, generator=generator).to(device)
        self.targets = torch.randint(0, 10, (batch,), generator=generator).to(device)
        model = model.to(device).eval()
        self.forwards = {
            strategy: PopulationForward(
                model, device=device, strategy=strategy,
                memory_budget=args.memory_budget_mb << 20,
            )
            for strategy in STRATEGIES
        }

    def warm_up(self) -> dict:
        """One untimed call per strategy (auto and the tiles are measured here); choices."""
        choices = {}
        for strategy, forward in self.forwards.items():
            forward(self.population, self.inputs, self.targets, cross_entropy_and_correct)
            choice = forward.last_choice
            choices[strategy] = {
                "strategy": choice.strategy, "tile": choice.tile, "chunk": choice.chunk,
                "seconds_per_candidate": choice.seconds_per_candidate,
                "abandoned": choice.abandoned, "errors": choice.errors,
            }
        return choices

    def time(self, strategy: str, device: torch.device) -> dict:
        forward = self.forwards[strategy]
        synchronize(device)
        start = time.perf_counter()
        losses, _correct = forward(self.population, self.inputs, self.targets,
                                   cross_entropy_and_correct)
        synchronize(device)
        seconds = time.perf_counter() - start
        samples = self.popsize * self.batch
        return {
            "seconds": seconds,
            "strategy": forward.last_choice.strategy,
            "tile": forward.last_choice.tile,
            "candidate_samples_per_second": samples / seconds,
            "gflops": samples * self.flops_per_sample / seconds / 1e9,
            "loss_mean": float(losses.mean()),
        }


# --------------------------------------------------------------------------- the run
def run(args: Args) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = run_info(device)
    generator = torch.Generator().manual_seed(args.seed + 1)
    workloads = {
        "mlp92k": Workload("mlp92k", args.mlp_popsize, args.mlp_batch, args, device),
        "convnet9854": Workload("convnet9854", args.conv_popsize, args.conv_batch, args, device),
    }
    time_matmul(args.matmul_size, 1, device, generator)  # warm-up
    choices = {name: w.warm_up() for name, w in workloads.items()}
    for name, per_strategy in choices.items():
        print(f"{name}: auto picked {per_strategy['auto']['strategy']} "
              f"(tile {per_strategy['auto']['tile']}, chunk {per_strategy['auto']['chunk']})",
              file=sys.stderr)

    steps = ["matmul"] + [f"{name}/{s}" for name in workloads for s in STRATEGIES]
    repeats = []
    for r in range(args.repeats):
        order = steps[r % len(steps):] + steps[:r % len(steps)]  # rotate: drift hits all alike
        record: dict = {"repeat": r, "order": order}
        for step in order:
            gc.collect()
            if step == "matmul":
                record[step] = time_matmul(args.matmul_size, args.matmuls, device, generator)
            else:
                name, strategy = step.split("/")
                record[step] = workloads[name].time(strategy, device)
        repeats.append(record)
        print(_progress(record, workloads), file=sys.stderr)
    return summarise(args, info, workloads, choices, repeats)


def _progress(record: dict, workloads: dict) -> str:
    parts = [f"repeat {record['repeat']}: matmul {record['matmul']['gflops']:.0f} GFLOP/s"]
    for name in workloads:
        figures = ", ".join(f"{s} {record[f'{name}/{s}']['gflops']:.1f}" for s in STRATEGIES)
        parts.append(f"{name} GFLOP/s: {figures}")
    return "; ".join(parts)


def summarise(args: Args, info: dict, workloads: dict, choices: dict, repeats: list) -> dict:
    matmul = [r["matmul"]["gflops"] for r in repeats]
    models = {}
    for name, w in workloads.items():
        per = {}
        loop_s = [r[f"{name}/loop"]["seconds"] for r in repeats]
        for strategy in STRATEGIES:
            records = [r[f"{name}/{strategy}"] for r in repeats]
            seconds = [x["seconds"] for x in records]
            per[strategy] = {
                "seconds": median(seconds),
                "candidate_samples_per_second": median(
                    [x["candidate_samples_per_second"] for x in records]),
                "gflops": median([x["gflops"] for x in records]),
                "share_of_matmul": median([x["gflops"] / m for x, m in zip(records, matmul)]),
                "speedup_over_loop": median([a / b for a, b in zip(loop_s, seconds)]),
            }
        models[name] = {
            "popsize": w.popsize, "batch": w.batch,
            "flops_per_candidate_sample": w.flops_per_sample,
            "auto_strategy": choices[name]["auto"]["strategy"],
            "strategies": per,
        }
    mlp_share = models["mlp92k"]["strategies"]["auto"]["share_of_matmul"]
    slowest = min(m["strategies"]["auto"]["speedup_over_loop"] for m in models.values())
    return {
        "benchmark": NAME,
        **info,
        "config": asdict(args) | {"out": relative_to_root(args.out)},
        "flops": "2 x multiply-adds of the Linear and Conv2d layers per candidate-sample",
        "units": "seconds per population forward call (whole population, one batch); GFLOP/s; "
                 "candidate-samples/s = popsize * batch / seconds",
        "repeats": repeats,
        "choices": choices,
        "matmul": {"size": args.matmul_size, "gflops": median(matmul)},
        "models": models,
        "goal": {
            "text": f"mlp92k (auto) >= {GOAL_SHARE:.0%} of matmul GFLOP/s; "
                    "no model slower (auto) than the loop",
            "mlp92k_share_of_matmul": mlp_share,
            "min_speedup_over_loop": slowest,
            "met": mlp_share >= GOAL_SHARE and slowest >= 1.0,
        },
    }


def doc_row(result: dict) -> dict:
    parts = []
    for name, m in result["models"].items():
        s = m["strategies"]
        auto = s["auto"]
        others = ", ".join(
            f"{k} {s[k]['gflops']:.1f} ({s[k]['speedup_over_loop']:.2f}x)"
            for k in ("batched", "vmap", "loop")
        )
        parts.append(
            f"{name} pop {m['popsize']} x batch {m['batch']}: auto ({m['auto_strategy']}) "
            f"{auto['gflops']:.1f} GFLOP/s = {auto['share_of_matmul']:.0%} of matmul, "
            f"{auto['speedup_over_loop']:.2f}x the loop, "
            f"{auto['candidate_samples_per_second']:,.0f} candidate-samples/s "
            f"[GFLOP/s (x loop): {others}]"
        )
    figure = "; ".join(parts) + f"; fp32 matmul {result['matmul']['gflops']:.0f} GFLOP/s"
    goal = result["goal"]
    return doc_line(
        NAME, result, figure,
        goal=f"mlp92k >= {GOAL_SHARE:.0%} of matmul GFLOP/s; no model slower than the loop",
        met=f"{'yes' if goal['met'] else 'no'} ({goal['mlp92k_share_of_matmul']:.0%}; "
            f"min {goal['min_speedup_over_loop']:.2f}x loop)",
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = run(args)
    path = write_result(result, args.out, NAME)
    print(f"wrote {path}")
    if args.doc:
        print(f"updated {update_doc_table(doc_row(result))}")
    print(f"fp32 matmul ({args.matmul_size}^2): {result['matmul']['gflops']:.1f} GFLOP/s")
    for name, m in result["models"].items():
        for strategy, s in m["strategies"].items():
            label = f"auto={m['auto_strategy']}" if strategy == "auto" else strategy
            print(f"{name} {label}: {s['seconds']:.3f} s/call, {s['gflops']:.1f} GFLOP/s "
                  f"({s['share_of_matmul']:.0%} of matmul), {s['speedup_over_loop']:.2f}x loop")
    print(f"goal ({result['goal']['text']}): {'met' if result['goal']['met'] else 'NOT met'}")
    return result


if __name__ == "__main__":
    main()
