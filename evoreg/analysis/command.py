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
                  "sgd-angles": "train", "robustness": "test", "transfer": "train"}


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
        "robustness": "accuracy with 10/25/50%% of input pixels dropped",
        "transfer": "occlude classes, train from the run's start, reveal, continue",
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
        elif name == "sgd-angles":
            sub.add_argument("--batch-sizes", type=_ints, default=[1, 4, 16, 64, 256, 1024])
            sub.add_argument("--batches", type=int, default=20)
        elif name == "robustness":
            sub.add_argument("--rates", type=_floats, default=[0.1, 0.25, 0.5])
            sub.add_argument("--repeats", type=int, default=3)
        else:
            sub.add_argument("--occluded", type=_ints, default=[8, 9], help="classes hidden")
            sub.add_argument("--pretrain-steps", type=int, default=200,
                             help="full-batch Adam steps (lr 0.01) with the classes hidden")
            sub.add_argument("--continue-with", default="goea,sgd",
                             help="comma-separated: goea, sgd, adam")
            sub.add_argument("--updates", type=int, default=300)
            sub.add_argument("--record-every", type=int, default=10)
            sub.add_argument("--sigma", type=float, default=0.01, help="goea's")
            sub.add_argument("--popsize", type=int, default=20, help="goea's")
            sub.add_argument("--learning-rate", type=float, default=0.01, help="sgd's, adam's")
            sub.add_argument("--batch-size", type=int, default=32, help="sgd's, adam's")
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
    for option in ("limit", "samples", "points", "directions", "batches", "repeats", "updates",
                   "record_every", "popsize", "batch_size", "pretrain_steps"):
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
    elif args.analysis == "sgd-angles":
        from .angles import plot_sgd_angles, sgd_angles

        result = sgd_angles(subject, x, batch_sizes=args.batch_sizes, batches=args.batches,
                            seed=args.seed)
        plot = plot_sgd_angles
    elif args.analysis == "robustness":
        from .transfer import corruption_robustness, plot_robustness

        if not all(0 <= rate < 1 for rate in args.rates):
            raise EvoregError("--rates must be in [0, 1)")
        result = {"analysis": "robustness",
                  **corruption_robustness(subject, x, rates=args.rates, repeats=args.repeats,
                                          seed=args.seed)}
        plot = plot_robustness
    else:
        from .transfer import class_occlusion_transfer, plot_transfer

        methods = [m.strip() for m in args.continue_with.split(",") if m.strip()]
        unknown = sorted(set(methods) - {"goea", "sgd", "adam"})
        if unknown or not methods:
            raise EvoregError(f"--continue-with takes goea, sgd, adam; got {args.continue_with!r}")
        classes = set(subject.labels.tolist())
        if not set(args.occluded) < classes:
            raise EvoregError(f"--occluded must be some of the classes {sorted(classes)}")
        test = Subject.from_problem(run.problem, "test")
        runs = [class_occlusion_transfer(
            subject, test, run.start, occluded=args.occluded, pretrain_steps=args.pretrain_steps,
            continue_with=method, updates=args.updates, record_every=args.record_every,
            popsize=args.popsize, sigma=args.sigma, learning_rate=args.learning_rate,
            batch_size=args.batch_size, seed=args.seed) for method in methods]
        result = {"analysis": "transfer", "runs": runs}
        plot = _plot_transfer_runs(plot_transfer)
        args.at = "start"
    result.update({"run_dir": str(args.run_dir), "at": args.at, "split": args.split,
                   "images": len(subject.labels), "problem": run.description["problem"],
                   "optimizer": run.description["optimizer"]})
    return result, plot


def _plot_transfer_runs(plot_transfer: Any) -> Any:
    return lambda result, path: plot_transfer(result["runs"], path)


def _headline(result: dict[str, Any]) -> str:
    kind = result["analysis"]
    if kind == "robustness":
        return f"accuracy clean {result['clean_accuracy']:.4f}; " + ", ".join(
            f"{100 * r['rate']:g}% pixels dropped {r['accuracy']:.4f}"
            for r in result["corrupted"])
    if kind == "transfer":
        return "; ".join(
            f"{r['continue_with']}: revealed classes {r['trace'][0]['revealed_accuracy']:.3f} "
            f"-> {r['trace'][-1]['revealed_accuracy']:.3f} after {r['updates']} updates"
            for r in result["runs"])
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
