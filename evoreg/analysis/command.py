"""``evoreg analyze``: the GO-EA analyses on a finished run's recommendation.

Each subcommand writes ``OUT/<analysis>.json`` and ``OUT/<analysis>.png`` (``OUT`` defaults
to ``RUN_DIR/analysis``) and prints the figures that matter in one or two lines.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evoreg.errors import EvoregError

#: analysis -> (split analysed by default, the paper's choice)
DEFAULT_SPLITS = {"flatness": "test", "updates": "train", "angles": "train",
                  "sgd-angles": "train"}


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        message = f"expected numbers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        message = f"expected integers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def add_parser(commands: Any, parser_class: type) -> None:
    analyze = commands.add_parser(
        "analyze", help="GO-EA analyses of a finished run's weights (flatness, updates, ...)")
    kinds = analyze.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS",
                                   parser_class=parser_class)
    cap = kinds.add_parser("cap", help="P(random direction within alpha of a given one)")
    cap.add_argument("--dimensions", type=_ints, default=[2, 5, 10, 20, 50, 100, 200, 500,
                                                          1000, 10000])
    cap.add_argument("--angles", type=_floats, default=[15.0, 30.0, 45.0, 60.0, 75.0],
                     help="degrees, comma-separated")
    cap.add_argument("--out", type=Path, default=Path("analysis"))
    cap.set_defaults(handler=cmd_analyze)
    helps = {
        "flatness": "loss and accuracy along filter-normalised random directions",
        "updates": "P(beneficial/neutral/deleterious) of random updates by edit distance",
        "angles": "angles among improving vs all random updates, KS p-value",
        "sgd-angles": "angle of minibatch SGD updates to the full-batch update",
    }
    for name, text in helps.items():
        sub = kinds.add_parser(name, help=text)
        sub.add_argument("run_dir", type=Path, metavar="RUN_DIR")
        sub.add_argument("--out", type=Path, help="default: RUN_DIR/analysis")
        sub.add_argument("--at", choices=["recommendation", "start"], default="recommendation",
                         help="the run's recommended weights or its initial (random) ones")
        sub.add_argument("--split", choices=["train", "validation", "test"],
                         default=DEFAULT_SPLITS[name])
        sub.add_argument("--limit", type=int, default=None, metavar="N",
                         help="use the first N images of the split")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--device", default="cpu")
        sub.add_argument("--trust-checkpoint", action="store_true",
                         help="load pickled optimizer state another user saved (can run code)")
        if name == "flatness":
            sub.add_argument("--max-step", type=float, default=1.0)
            sub.add_argument("--points", type=int, default=11)
            sub.add_argument("--directions", type=int, default=5)
            sub.add_argument("--normalization", choices=["filter", "tensor"], default="filter")
        elif name == "updates":
            sub.add_argument("--distances", type=_floats,
                             default=[0.0003, 0.001, 0.003, 0.01, 0.03, 0.1])
            sub.add_argument("--samples", type=int, default=50)
            sub.add_argument("--layers", choices=["whole", "each"], default="whole")
            sub.add_argument("--neutral-tolerance", type=float, default=1e-3)
        elif name == "angles":
            sub.add_argument("--samples", type=int, default=100)
            sub.add_argument("--sigma", type=float, default=None,
                             help="default: the run's optimizer sigma, else 0.01")
        else:
            sub.add_argument("--batch-sizes", type=_ints, default=[1, 4, 16, 64, 256, 1024])
            sub.add_argument("--batches", type=int, default=20)
        sub.set_defaults(handler=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    from evoreg.checkpoint import write_json

    result, plot = _analyze(args)
    out: Path = args.out if args.out is not None else args.run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    write_json(result, out / f"{args.analysis}.json")
    plot(result, str(out / f"{args.analysis}.png"))
    print(_headline(result))
    print(f"wrote {out / (args.analysis + '.json')} and {out / (args.analysis + '.png')}")
    return 0


def _analyze(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    if args.analysis == "cap":
        from .cap import cap_table, plot_cap

        if min(args.dimensions, default=0) < 2:
            raise EvoregError("--dimensions must all be >= 2")
        return {"analysis": "cap", **cap_table(args.dimensions, args.angles)}, plot_cap
    for option in ("limit", "samples", "points", "directions", "batches"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise EvoregError(f"--{option} must be >= 1, got {value}")
    from .network import Subject
    from .rundir import load_run

    run = load_run(args.run_dir, device=args.device, trust=args.trust_checkpoint)
    subject = Subject.from_problem(run.problem, args.split, args.limit)
    x = run.recommendation if args.at == "recommendation" else run.start
    if args.analysis == "flatness":
        from .flatness import flatness_profile, plot_flatness

        if args.directions < 5:
            raise EvoregError("--directions must be >= 5 (a point needs several directions)")
        result = flatness_profile(subject, x, max_step=args.max_step, points=args.points,
                                  directions=args.directions, normalization=args.normalization,
                                  seed=args.seed)
        plot = plot_flatness
    elif args.analysis == "updates":
        from .updates import plot_update_sweep, update_sweep

        result = update_sweep(subject, x, distances=args.distances, samples=args.samples,
                              layers=args.layers, neutral_tolerance=args.neutral_tolerance,
                              seed=args.seed)
        plot = plot_update_sweep
    elif args.analysis == "angles":
        from .angles import plot_update_angles, update_angles

        sigma = args.sigma or float(run.optimizer_config.get("sigma", 0.01))
        result = update_angles(subject, x, samples=args.samples, sigma=sigma, seed=args.seed)
        plot = plot_update_angles
    else:
        from .angles import plot_sgd_angles, sgd_angles

        result = sgd_angles(subject, x, batch_sizes=args.batch_sizes, batches=args.batches,
                            seed=args.seed)
        plot = plot_sgd_angles
    result.update({"run_dir": str(args.run_dir), "at": args.at, "split": args.split,
                   "images": len(subject.labels), "problem": run.description["problem"],
                   "optimizer": run.description["optimizer"]})
    return result, plot


def _headline(result: dict[str, Any]) -> str:
    kind = result["analysis"]
    if kind == "cap":
        return f"cap probabilities for n in {result['dimensions']} and alpha in " \
               f"{result['angles_degrees']} degrees"
    if kind == "flatness":
        return (f"flatness at {result['at']}: loss {result['loss_mean'][0]:.4g} -> "
                f"{result['loss_mean'][-1]:.4g}, accuracy {result['accuracy_mean'][0]:.4f} -> "
                f"{result['accuracy_mean'][-1]:.4f} at step {result['steps'][-1]:g}")
    if kind == "update-sweep":
        return "P(beneficial) by edit distance: " + ", ".join(
            f"{r['edit_distance']:g}: {r['p_beneficial']:.2f}" for r in result["whole"])
    if kind == "update-angles":
        p = result["ks"]["p_value"]
        return (f"{result['improving']}/{result['samples']} updates improve; mean angle "
                f"{result['angles_all']['mean']:.2f} deg (all), "
                f"{result['angles_improving']['mean']:.2f} deg (improving); KS p = "
                + (f"{p:.3g}" if p is not None else "n/a (fewer than 2 improving)"))
    return "mean angle to the full-batch update by batch size: " + ", ".join(
        f"{r['batch_size']}: {r['mean']:.1f}" for r in result["batch_sizes"])
