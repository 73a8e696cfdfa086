"""SNES and OpenAI-ES: evoreg against EvoTorch (and evosax) in one run.

evoreg's ``snes`` (Schaul, Glasmachers & Schmidhuber 2011, "High dimensions and heavy tails
for natural evolution strategies", GECCO) and ``openai-es`` (Salimans, Ho, Chen, Sidor &
Sutskever 2017, "Evolution strategies as a scalable alternative to reinforcement learning",
arXiv:1703.03864) next to the same algorithms in EvoTorch (Toklu et al. 2023, "EvoTorch: Scalable
evolutionary computation in Python", arXiv:2302.12600; ``evotorch.algorithms.SNES`` and
``PGPE``) and, when installed, evosax (Lange 2022, arXiv:2212.04180; ``SNES`` and
``Open_ES`` on CPU JAX):

- evoreg ``snes`` / EvoTorch ``SNES`` / evosax ``SNES``: log-rank utilities, eta_mu = 1,
  eta_sigma = (3 + ln d) / (5 sqrt d) (all three libraries' defaults); sigma adapted from its start;
- evoreg ``openai-es`` / EvoTorch ``PGPE`` / evosax ``Open_ES``: mirrored (antithetic)
  sampling, centred ranks, a fixed sigma and Adam on the mean (lr 0.01, betas 0.9 / 0.999).
  EvoTorch has no OpenAI-ES: its closest is PGPE (Sehnke et al. 2010, "Parameter-exploring
  policy gradients", Neural Networks 23) with ``symmetric=True``, ``ranking_method=
  "centered"``, ``optimizer="adam"`` (matching evoreg's Adam, not PGPE's default ClipUp) and
  ``stdev_learning_rate=0`` (PGPE would otherwise adapt sigma; OpenAI-ES does not).
  evoreg's ``weight_decay`` is set to 0 here, since neither peer has one. The gradients differ
  by constant factors (1/sigma, 1/n) that Adam cancels.

Every optimizer gets the same popsize, (initial) sigma, start point and number of
generations. Two measurements:

(a) Overhead: per-generation ask + trivial loss (sum of squares, computed the same way in each
    library: torch for evoreg and EvoTorch, jax.numpy for evosax) + tell, at d = 92,234 (the
    mlp92k network's weights) with popsize 200 and sigma 0.01. evoreg reads the rows as an
    evaluator does (``pop.chunks`` into a kept buffer: openai-es's population is lazy, so
    this is where its rows are written); EvoTorch runs ``searcher.step()`` on a vectorized
    ``Problem``; evosax runs its jitted ask and tell and blocks until the new mean is ready.
    After ``--warmup`` generations (evosax compiles there), ``--repeats`` rounds of
    ``--timing-generations`` generations each, the optimizers interleaved and their order
    rotated every round. Figures: median and 90th percentile of the single generations'
    times, and the ratio EvoTorch / evoreg of the medians (and of the p90s) for the same
    algorithm. Goal: the ratio >= 2 at the median for both algorithms.
(b) Final loss after the same number of evaluations on ``rastrigin`` (d = 100, start 0, sigma
    1, the problem's own space) and ``mnist-weights`` (dataset ``digits``, model
    ``mlp-digits``, 2,410 weights, Glorot start, sigma 0.01, minibatches of ``--batch-size``
    training images). Every optimizer minimises the very same function: evoreg's problem
    object, whose ``evaluate`` the peers call through a thin wrapper (an EvoTorch vectorized
    objective; a numpy copy of evosax's population). A seed gives every optimizer a problem
    built with the same seed, so all see the same minibatch sequence (each generation is one
    ``evaluate`` call of the whole population, checked). Final figure, the same for all:
    the problem's ``report`` of the final mean (centre): Rastrigin's loss, and for
    mnist-weights the cross-entropy on the full training split (and test accuracy). Medians
    over ``--seeds`` seeds; per pair (evoreg snes vs EvoTorch SNES, evoreg openai-es vs
    EvoTorch PGPE; evosax likewise, for information) Mann-Whitney U tests (scipy): two-sided,
    and one-sided in each direction; one-sided p < 0.05 is "better" / "worse", else "tie".
    Goal: no evoreg algorithm worse than the same algorithm in EvoTorch on either problem.

Threads: torch's and JAX's defaults, as a user gets them (nothing is set unless
``--threads`` is given). The machine may be shared: the optimizers are interleaved so that
load hits them alike, the load average before and after is in the JSON, but run it on an
idle machine: on a 2-core machine busy with other jobs, torch's two intra-op threads wait on
each other at every parallel op, and evoreg's noise-table gather (``index_select`` of 200
windows of 92,234 values) took 1.07 s instead of 10 ms with one thread (measured while
writing this script), which makes (a) a measure of the contention. Runs are seed-major.

Defaults: (a) d = 92,234, popsize 200, sigma 0.01, 2 warm-up generations, 7 repeats x 5
generations; (b) popsize 200, 5 seeds, Rastrigin d = 100 for 1,000 generations (200,000
evaluations: SNES needs about that many to settle in a basin), mnist-weights for 100
generations (20,000 evaluations) of minibatches of 256. Run time, estimated from the quick
run and single-seed runs on 2 CPU cores that two other benchmarks kept busy (load average
4.5): about 15 min there with torch's 2 default threads ((a) 4, Rastrigin 7, mnist-weights
4), about 4 min with ``--threads 1``; an idle 2-core machine should need about 5 min.

Writes ``nes_peers.json`` and ``nes_peers.png`` (per-generation time bars with p90 whiskers;
final-loss and test-accuracy boxplots) to ``--out`` and the benchmark's line in
``docs/benchmarks.md``. Needs the peers: ``pip install -e '.[peers]'`` (EvoTorch is required,
evosax optional: without it the script says "evosax: not installed" and leaves it out).

    .venv/bin/python benchmarks/nes_peers.py              # the CPU setting (~5 min idle)
    .venv/bin/python benchmarks/nes_peers.py --quick      # smoke run, small sizes (< 30 s)
    .venv/bin/python benchmarks/nes_peers.py --seeds 10 --generations 2000 --no-doc
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
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
    percentile,
    relative_to_root,
    run_info,
    update_doc_table,
    write_result,
)

from evoreg import Population, Real  # noqa: E402
from evoreg.runner import derive_seeds  # noqa: E402

NAME = "nes_peers"
ALGORITHMS = ("snes", "openai-es")
#: Optimizer labels: (library, algorithm), the same algorithm's peers next to each other.
OPTIMIZERS = {
    "evoreg snes": ("evoreg", "snes"),
    "EvoTorch SNES": ("evotorch", "snes"),
    "evosax SNES": ("evosax", "snes"),
    "evoreg openai-es": ("evoreg", "openai-es"),
    "EvoTorch PGPE": ("evotorch", "openai-es"),
    "evosax Open_ES": ("evosax", "openai-es"),
}
OURS = {"snes": "evoreg snes", "openai-es": "evoreg openai-es"}
PEERS = {"snes": ("EvoTorch SNES", "evosax SNES"),
         "openai-es": ("EvoTorch PGPE", "evosax Open_ES")}
PROBLEMS = ("rastrigin", "mnist-weights")
LR = 0.01  #: Adam's step size on the mean (evoreg openai-es' default)
TIMING_SIGMA = 0.01
GOAL_RATIO = 2.0
GOAL = (f"(a) EvoTorch / evoreg per-generation time >= {GOAL_RATIO:g} at the median, d = "
        "92,234, for SNES and OpenAI-ES (vs PGPE); (b) evoreg's final losses not worse than "
        "EvoTorch's same algorithm on rastrigin and mnist-weights (one-sided Mann-Whitney "
        "p >= 0.05 counts as a tie)")
#: What --quick uses unless given.
QUICK = {"dim": 2000, "popsize": 20, "warmup": 2, "repeats": 2, "timing_generations": 2,
         "seeds": 2, "generations": 20, "mnist_generations": 4, "batch_size": 64,
         "rastrigin_dim": 10}
DEFAULTS = {"dim": 92_234, "popsize": 200, "warmup": 2, "repeats": 7, "timing_generations": 5,
            "seeds": 5, "generations": 1000, "mnist_generations": 100, "batch_size": 256,
            "rastrigin_dim": 100}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, help="(a) d (default 92,234: mlp92k's weights)")
    parser.add_argument("--popsize", type=int, help="candidates per generation, (a) and (b)")
    parser.add_argument("--warmup", type=int, help="(a) untimed generations per optimizer")
    parser.add_argument("--repeats", type=int, help="(a) timed rounds")
    parser.add_argument("--timing-generations", type=int, help="(a) generations per round")
    parser.add_argument("--seeds", type=int, help="(b) runs per optimizer and problem")
    parser.add_argument("--generations", type=int, help="(b) generations on rastrigin")
    parser.add_argument("--mnist-generations", type=int,
                        help="(b) generations on mnist-weights")
    parser.add_argument("--batch-size", type=int, help="(b) mnist-weights' minibatch size")
    parser.add_argument("--rastrigin-dim", type=int, help="(b) rastrigin's d")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own "
                        "default, left as a user gets it)")
    parser.add_argument("--no-evosax", dest="evosax", action="store_false",
                        help="leave evosax out even when it is installed")
    add_output_options(parser, str(RESULTS), QUICK)
    args = parser.parse_args()
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.popsize % 2:
        parser.error("--popsize must be even (mirrored pairs)")
    if importlib.util.find_spec("evotorch") is None:
        parser.error("evotorch is not installed: pip install -e '.[peers]'")
    args.evosax_missing = None
    if args.evosax:
        try:
            import jax  # noqa: F401
            import optax  # noqa: F401
            from evosax.algorithms import SNES, Open_ES  # noqa: F401  (evosax >= 0.3)
        except Exception as error:  # not installed, too old, or a jax that does not load
            args.evosax, args.evosax_missing = False, f"{type(error).__name__}: {error}"
            print(f"evosax: not installed ({args.evosax_missing})", flush=True)
    return args


def labels(args: argparse.Namespace) -> list[str]:
    return [name for name, (library, _) in OPTIMIZERS.items()
            if library != "evosax" or args.evosax]


def library_versions() -> dict[str, str | None]:
    found = {}
    for package in ("evotorch", "evosax", "jax", "jaxlib", "optax", "scipy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


# --------------------------------------------------------------------------- the libraries
def import_evotorch():
    with warnings.catch_warnings():  # its import scripts a function: a torch FutureWarning
        warnings.simplefilter("ignore", FutureWarning)
        import evotorch
        from evotorch.algorithms import PGPE, SNES
    logging.getLogger("evotorch").setLevel(logging.WARNING)  # not a line per Problem
    return evotorch, SNES, PGPE


def evotorch_searcher(algorithm: str, objective: Callable, dim: int, popsize: int,
                      sigma: float, start: torch.Tensor, seed: int):
    """EvoTorch's SNES, or PGPE set up as OpenAI-ES, on a vectorized Problem of ``objective``."""
    evotorch, SNES, PGPE = import_evotorch()
    problem = evotorch.Problem("min", objective, solution_length=dim, initial_bounds=(-1, 1),
                               vectorized=True, seed=seed % 2**32)
    if algorithm == "snes":
        return SNES(problem, popsize=popsize, stdev_init=sigma, center_init=start)
    return PGPE(problem, popsize=popsize, center_learning_rate=LR, stdev_learning_rate=0.0,
                stdev_init=sigma, center_init=start, optimizer="adam",
                ranking_method="centered", symmetric=True)


_EVOSAX_CACHE: dict[tuple, Any] = {}


def evosax_strategy(algorithm: str, dim: int, popsize: int, sigma: float):
    """(strategy, params); one strategy object per setting, so that jax compiles it once."""
    key = (algorithm, dim, popsize, sigma)
    if key not in _EVOSAX_CACHE:
        import jax.numpy as jnp
        import optax
        from evosax.algorithms import SNES, Open_ES

        if algorithm == "snes":
            strategy = SNES(popsize, jnp.zeros(dim))
            params = strategy.default_params.replace(std_init=sigma)
        else:
            strategy = Open_ES(popsize, jnp.zeros(dim), use_antithetic_sampling=True,
                               optimizer=optax.adam(LR),
                               std_schedule=optax.constant_schedule(sigma))
            params = strategy.default_params
        _EVOSAX_CACHE[key] = (strategy, params)
    return _EVOSAX_CACHE[key]


def evoreg_config(algorithm: str, popsize: int, sigma: float) -> dict[str, Any]:
    if algorithm == "snes":
        return {"popsize": popsize}  # sigma: the space's
    return {"popsize": popsize, "sigma": sigma, "lr": LR, "weight_decay": 0.0}


# --------------------------------------------------------------------------- (a) overhead
def sum_of_squares(rows: torch.Tensor) -> torch.Tensor:
    return rows.pow(2).sum(1)


def timed_generation(label: str, args: argparse.Namespace) -> Callable[[], None]:
    """One generation of ``label`` on the trivial loss, as a function of no arguments."""
    library, algorithm = OPTIMIZERS[label]
    dim, popsize, sigma = args.dim, args.popsize, TIMING_SIGMA
    if library == "evoreg":
        space = Real(dim, sigma=sigma)
        opt = evoreg.make_optimizer(algorithm, space, seed=0,
                                    **evoreg_config(algorithm, popsize, sigma))
        buffer: list[torch.Tensor] = []

        def generation() -> None:
            pop = opt.ask()
            if not buffer:
                buffer.append(torch.empty(pop.default_chunk(), dim))
            losses = torch.cat([sum_of_squares(rows) for _, rows in pop.chunks(out=buffer[0])])
            opt.tell(pop, losses)

        return generation
    if library == "evotorch":
        searcher = evotorch_searcher(algorithm, sum_of_squares, dim, popsize, sigma,
                                     torch.zeros(dim), seed=0)
        return searcher.step
    import jax
    import jax.numpy as jnp

    strategy, params = evosax_strategy(algorithm, dim, popsize, sigma)
    key = jax.random.key(0)
    state = [strategy.init(key, jnp.zeros(dim), params), key]
    loss = jax.jit(lambda x: jnp.sum(x * x, axis=1))

    def generation() -> None:
        key, ask_key, tell_key = jax.random.split(state[1], 3)
        x, es_state = strategy.ask(ask_key, state[0], params)
        es_state, _ = strategy.tell(tell_key, x, loss(x), es_state, params)
        es_state.mean.block_until_ready()
        state[:] = [es_state, key]

    return generation


def measure_overhead(args: argparse.Namespace) -> dict[str, Any]:
    names = labels(args)
    generations = {}
    for label in names:
        generations[label] = timed_generation(label, args)
        for _ in range(args.warmup):
            generations[label]()
    seconds: dict[str, list[list[float]]] = {label: [] for label in names}
    for repeat in range(args.repeats):
        shift = repeat % len(names)
        for label in names[shift:] + names[:shift]:
            times = []
            for _ in range(args.timing_generations):
                start = time.perf_counter()
                generations[label]()
                times.append(time.perf_counter() - start)
            seconds[label].append(times)
        print(f"(a) round {repeat + 1}/{args.repeats}: " + ", ".join(
            f"{label} {1e3 * statistics.median(seconds[label][-1]):.1f} ms" for label in names),
            flush=True)
    del generations
    stats = {}
    for label in names:
        flat = [t for times in seconds[label] for t in times]
        stats[label] = {"median_ms": 1e3 * statistics.median(flat),
                        "p90_ms": 1e3 * percentile(flat, 0.9)}
    ratios = {}
    for algorithm in ALGORITHMS:
        ours = stats[OURS[algorithm]]
        for peer in PEERS[algorithm]:
            if peer in stats:
                ratios[f"{peer} / {OURS[algorithm]}"] = {
                    q: stats[peer][q] / ours[q] for q in ("median_ms", "p90_ms")}
    return {"seconds": seconds, "stats": stats, "ratios": ratios}


# --------------------------------------------------------------------------- (b) final loss
def problem_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if name == "rastrigin":
        return {"dim": args.rastrigin_dim}
    return {"dataset": "digits", "model": "mlp-digits", "batch_size": args.batch_size}


def generations_of(name: str, args: argparse.Namespace) -> int:
    return args.generations if name == "rastrigin" else args.mnist_generations


def final_loss(report: dict[str, float]) -> float:
    return report["noise_free_loss"] if "noise_free_loss" in report else report["train_loss"]


def one_run(label: str, name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """``label`` on problem ``name`` with seed ``seed``: the report of its final mean."""
    library, algorithm = OPTIMIZERS[label]
    problem_seed, optimizer_seed = derive_seeds(seed)  # what evoreg.run(name, ...) uses
    problem = evoreg.make_problem(name, seed=problem_seed, **problem_config(name, args))
    dim, sigma, popsize = problem.space.dim, problem.space.sigma, args.popsize
    generations = generations_of(name, args)
    start = problem.space.initial()
    calls = [0]

    def losses_of(rows: torch.Tensor) -> torch.Tensor:
        calls[0] += 1  # EvoTorch hands a ReadOnlyTensor: the same memory as a plain one
        rows = torch.Tensor.as_subclass(rows, torch.Tensor)
        return problem.evaluate(Population(rows)).losses

    started = time.perf_counter()
    if library == "evoreg":
        result = evoreg.run(problem, algorithm, popsize * generations, seed=seed,
                            optimizer_config=evoreg_config(algorithm, popsize, sigma),
                            progress=False, plot=False)
        calls[0] = result.generations
        centre = result.recommendation
    elif library == "evotorch":
        searcher = evotorch_searcher(algorithm, losses_of, dim, popsize, sigma, start,
                                     optimizer_seed)
        for _ in range(generations):
            searcher.step()
        centre = torch.Tensor.as_subclass(searcher.status["center"], torch.Tensor).clone()
    else:
        import jax
        import jax.numpy as jnp

        strategy, params = evosax_strategy(algorithm, dim, popsize, sigma)
        key = jax.random.key(optimizer_seed % 2**32)
        key, init_key = jax.random.split(key)
        state = strategy.init(init_key, jnp.asarray(start.numpy()), params)
        for _ in range(generations):
            key, ask_key, tell_key = jax.random.split(key, 3)
            x, state = strategy.ask(ask_key, state, params)
            losses = losses_of(torch.from_numpy(np.array(x)))
            state, _ = strategy.tell(tell_key, x, jnp.asarray(losses.numpy()), state, params)
        centre = torch.from_numpy(np.array(state.mean))
    search_seconds = time.perf_counter() - started
    if calls[0] != generations:
        raise RuntimeError(f"{label} called evaluate {calls[0]} times in {generations} "
                           "generations: the minibatches would differ")
    report = problem.report(centre)
    return {"optimizer": label, "problem": name, "seed": seed, "sigma": sigma,
            "generations": generations, "evaluations": popsize * generations,
            "final_loss": final_loss(report), "report": report, "search_seconds": search_seconds}


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    for seed in range(args.seeds):
        for name in PROBLEMS:
            for label in labels(args):
                run = one_run(label, name, seed, args)
                runs.append(run)
                extra = (f", test accuracy {run['report']['test_accuracy']:.3f}"
                         if name == "mnist-weights" else "")
                print(f"(b) seed {seed}, {name}, {label}: final loss {run['final_loss']:.4g}"
                      f"{extra}, {run['search_seconds']:.1f} s", flush=True)
    return runs


def values(runs: list[dict[str, Any]], label: str, name: str, key: str = "final_loss"):
    return [r[key] if key in r else r["report"][key]
            for r in runs if r["optimizer"] == label and r["problem"] == name]


def compare(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Per problem and pair (evoreg, peer): medians and Mann-Whitney U tests."""
    from scipy.stats import mannwhitneyu  # only here: scipy is slow to import

    table: dict[str, Any] = {}
    for name in PROBLEMS:
        table[name] = {"median_final_loss": {
            label: statistics.median(values(runs, label, name)) for label in labels(args)}}
        if name == "mnist-weights":
            table[name]["median_test_accuracy"] = {
                label: statistics.median(values(runs, label, name, "test_accuracy"))
                for label in labels(args)}
        pairs = {}
        for algorithm in ALGORITHMS:
            ours = OURS[algorithm]
            for peer in PEERS[algorithm]:
                if peer not in labels(args):
                    continue
                a, b = values(runs, ours, name), values(runs, peer, name)
                p = {alternative: float(mannwhitneyu(a, b, alternative=alternative).pvalue)
                     for alternative in ("two-sided", "less", "greater")}
                verdict = "better" if p["less"] < 0.05 else "worse" if p["greater"] < 0.05 \
                    else "tie"
                pairs[f"{ours} vs {peer}"] = {
                    "a": ours, "b": peer, "a_values": a, "b_values": b,
                    "mann_whitney_u": float(mannwhitneyu(a, b).statistic),
                    "p_two_sided": p["two-sided"], "p_less": p["less"],
                    "p_greater": p["greater"], "verdict": verdict}
        table[name]["pairs"] = pairs
    return table


# --------------------------------------------------------------------------- output
def plot(overhead: dict[str, Any], runs: list[dict[str, Any]], args: argparse.Namespace,
         path: Path) -> None:
    names = labels(args)
    colours = {"evoreg": "C0", "evotorch": "C1", "evosax": "C2"}
    colour = [colours[OPTIMIZERS[label][0]] for label in names]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax = axes[0, 0]
    stats = overhead["stats"]
    medians = [stats[label]["median_ms"] for label in names]
    p90 = [stats[label]["p90_ms"] - stats[label]["median_ms"] for label in names]
    ax.bar(range(len(names)), medians, yerr=[[0] * len(names), p90], color=colour, capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("ms per generation (median, whisker p90)")
    ax.set_title(f"(a) ask + sum of squares + tell, d = {args.dim:,}, popsize {args.popsize}")
    panels = [("rastrigin", "final_loss", f"(b) rastrigin d = {args.rastrigin_dim}: loss"),
              ("mnist-weights", "final_loss", "(b) mnist-weights digits: train loss"),
              ("mnist-weights", "test_accuracy", "(b) mnist-weights digits: test accuracy")]
    for ax, (name, key, title) in zip(axes.flat[1:], panels):
        data = [values(runs, label, name, key) for label in names]
        boxes = ax.boxplot(data, patch_artist=True)
        for patch, c in zip(boxes["boxes"], colour):
            patch.set_facecolor(c)
            patch.set_alpha(0.5)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
        ax.set_title(f"{title}, {args.seeds} seeds")
    for ax in axes.flat:
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(overhead: dict[str, Any], table: dict[str, Any],
            args: argparse.Namespace) -> tuple[str, bool, bool]:
    stats, ratios = overhead["stats"], overhead["ratios"]
    timing = "; ".join(
        f"{label} {stats[label]['median_ms']:.1f} / {stats[label]['p90_ms']:.1f}"
        for label in labels(args))
    evotorch_ratios = {algorithm: ratios[f"{PEERS[algorithm][0]} / {OURS[algorithm]}"]
                       for algorithm in ALGORITHMS}
    met_a = all(r["median_ms"] >= GOAL_RATIO for r in evotorch_ratios.values())
    ratio_text = ", ".join(
        f"{algorithm} {r['median_ms']:.1f}x (p90 {r['p90_ms']:.1f}x)"
        for algorithm, r in evotorch_ratios.items())
    verdicts, met_b = [], True
    for name in PROBLEMS:
        medians = table[name]["median_final_loss"]
        cells = ", ".join(f"{label} {medians[label]:.4g}" for label in labels(args))
        pairs = []
        for pair, test in table[name]["pairs"].items():
            pairs.append(f"{pair}: {test['verdict']} (p = {test['p_two_sided']:.2g})")
            if test["b"] in (PEERS[a][0] for a in ALGORITHMS) and test["verdict"] == "worse":
                met_b = False
        verdicts.append(f"{name} median final loss {cells}; {'; '.join(pairs)}")
    figure = (
        f"(a) d = {args.dim:,}, popsize {args.popsize}: ms per generation (median / p90) "
        f"{timing}; EvoTorch / evoreg {ratio_text}. (b) popsize {args.popsize}, {args.seeds} "
        f"seeds, rastrigin d = {args.rastrigin_dim} {args.generations} generations, "
        f"mnist-weights digits mlp-digits {args.mnist_generations} generations (batch "
        f"{args.batch_size}): " + " | ".join(verdicts)
    )
    if not args.evosax:
        figure += "; evosax: not installed"
    return figure, met_a, met_b


# --------------------------------------------------------------------------- main
def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    overhead = measure_overhead(args)
    runs = run_all(args)
    table = compare(runs, args)
    wall = time.perf_counter() - started
    figure, met_a, met_b = summary(overhead, table, args)
    info = run_info("cpu")
    data = {
        "benchmark": NAME,
        **info,
        "libraries": library_versions(),
        "config": {
            "quick": args.quick, "threads": args.threads, "optimizers": OPTIMIZERS,
            "evosax": args.evosax, "evosax_missing": args.evosax_missing, "adam_lr": LR,
            "overhead": {"dim": args.dim, "popsize": args.popsize, "sigma": TIMING_SIGMA,
                         "warmup": args.warmup, "repeats": args.repeats,
                         "generations_per_repeat": args.timing_generations},
            "final_loss": {
                "popsize": args.popsize, "seeds": list(range(args.seeds)),
                "problems": {name: {"config": problem_config(name, args),
                                    "generations": generations_of(name, args),
                                    "evaluations": args.popsize * generations_of(name, args)}
                             for name in PROBLEMS},
                "final_figure": "problem.report of the final mean: rastrigin noise_free_loss; "
                                "mnist-weights train_loss (full training split)",
            },
        },
        "overhead": overhead,
        "runs": runs,
        "table": table,
        "wall_time_s": wall,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "goal": {"text": GOAL, "met": met_a and met_b, "overhead_met": met_a,
                 "final_loss_met": met_b},
    }
    out = Path(args.out)
    path = write_result(data, out, NAME)
    plot(overhead, runs, args, out / f"{NAME}.png")
    print(figure)
    print(f"goal (a) {'met' if met_a else 'not met'}, (b) {'met' if met_b else 'not met'}; "
          f"{wall:.0f} s; wrote {relative_to_root(path)}")
    if args.doc and not args.quick:
        met = f"(a) {'yes' if met_a else 'no'}; (b) {'yes' if met_b else 'no'}"
        update_doc_table(doc_line(NAME, info, f"{figure}; {wall / 60:.0f} min", goal=GOAL,
                                  met=met))


if __name__ == "__main__":
    main()
