"""The `causalvision` command.

  causalvision data build NAME [--size N] [--data-dir DIR] [--seed S]
  causalvision train CONFIG --workdir DIR [--set key=value ...]
  causalvision counterfactual --workdir DIR --do NODE=VALUE[,NODE=VALUE] [--n 16] [--out F]
  causalvision evaluate --workdir DIR [--oracle ORACLE_RUN] [--n 256] [--out DIR]
      [--coordinator-address HOST:PORT --num-processes N --process-id K]
  causalvision audit --scm RUN --classifier SPEC --do NODE=VALUE [--do ...] --out DIR
      [--num 64] [--seed 0] [--bootstrap 1000] [--patch 4] [--curve NODE=V1:V2:STEPS ...]
      [--attribute NAME] [--no-exact] [--pixel-noise abduct|mean]
  causalvision report RUN [--out FILE]

Heavy imports happen inside each sub-command so `causalvision --help` is instant.

The installed program keeps JAX's persistent compilation cache in $CAUSALVISION_CACHE_DIR
(default ~/.cache/causalvision/jax; set it empty to switch the cache off): a resumed or
repeated run loads its compiled train step instead of compiling it again (a 32x32 HVAE's
step, traced and compiled on 2 CPU cores: 32 s cold, 10 s on a restart).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from typing import Any


def _data_build(args: argparse.Namespace) -> int:
    from causalvision.data import build_dataset

    path = build_dataset(args.name, size=args.size, data_dir=args.data_dir, seed=args.seed)
    print(f"built {args.name}: {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from causalvision.train import initialize, load_config, train_and_evaluate

    # Join the other processes before anything touches a device.
    initialize(args.coordinator_address, args.num_processes, args.process_id)
    config = load_config(args.config, overrides=args.set)
    train_and_evaluate(config, args.workdir)
    return 0


def _image_options(args: argparse.Namespace) -> dict:
    return {} if args.pixel_noise is None else {"pixel_noise": args.pixel_noise}


def _counterfactual(args: argparse.Namespace) -> int:
    from causalvision.audit import (
        counterfactual_grid,
        counterfactual_rows,
        held_out_examples,
        load_deep_scm,
        parse_do,
    )
    from causalvision.train.data import dataset_of

    config, _, scm = load_deep_scm(args.workdir, **_image_options(args))
    dataset = dataset_of(config.data)
    interventions = [parse_do(text, dataset) for text in args.do]
    examples = held_out_examples(config, args.n)
    rows = counterfactual_rows(scm, examples, interventions, dataset)
    path = counterfactual_grid(examples["image"], rows, args.out, title=str(args.workdir))
    print(f"wrote {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from causalvision.audit import evaluate_run

    block: list[tuple[str, float]] = []
    current: list[str] = []

    def show(evaluator: str, name: str, value: float) -> None:
        if current and current[0] != evaluator:
            _print_block(current[0], block)
            block.clear()
        current[:] = [evaluator]
        block.append((name, value))

    out = args.out or args.workdir
    evaluate_run(
        args.workdir,
        out,
        oracle_workdir=args.oracle,
        num=args.n,
        progress=show,
        **_image_options(args),
    )
    if current:
        _print_block(current[0], block)
    print(f"wrote {out}/metrics.json")
    return 0


def _load_callable(spec: str) -> Any:
    """`path/to/file.py:function` or `package.module:function` -> the callable it names."""
    import importlib
    import importlib.util

    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise ValueError(
            f"--classifier: expected a run directory, FILE.py:FUNCTION or MODULE:FUNCTION, "
            f"got {spec!r}"
        )
    try:
        if where.endswith(".py") or pathlib.Path(where).is_file():
            path = pathlib.Path(where)
            if not path.is_file():
                raise ValueError(f"no file {where!r}")
            module_spec = importlib.util.spec_from_file_location(f"_classifier_{path.stem}", path)
            if module_spec is None or module_spec.loader is None:
                raise ValueError(f"cannot load {where!r} as Python")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        target = module
        for part in name.split("."):
            target = getattr(target, part)
    except Exception as error:  # the user's code: any failure to load it is bad input
        raise ValueError(
            f"--classifier: cannot load {spec!r} ({type(error).__name__}: {error})"
        ) from error
    if not callable(target):
        raise ValueError(f"--classifier: {spec!r} is a {type(target).__name__}, not a callable")
    return target


def _parse_curve(text: str, dataset: Any) -> tuple[str, list[float]]:
    """ "NODE=V1:V2:STEPS" -> (node, STEPS evenly spaced values from V1 to V2)."""
    import numpy as np

    from causalvision.data import check_attributes

    node, sep, span = text.partition("=")
    node = node.strip()
    parts = span.split(":")
    if not sep or node not in dataset.attributes or len(parts) != 3:
        raise ValueError(
            f"--curve: expected NODE=V1:V2:STEPS with NODE in {dataset.attributes}, got {text!r}"
        )
    try:
        low, high, steps = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"--curve: {text!r}: V1, V2 must be numbers, STEPS an integer") from None
    if steps < 2:
        raise ValueError(f"--curve: {text!r}: expected STEPS >= 2, got {steps}")
    values = [float(v) for v in np.linspace(low, high, steps)]
    for value in values:
        check_attributes(dataset.attribute_specs, {node: value}, "--curve")
    return node, values


def _audit(args: argparse.Namespace) -> int:
    """Validates every input (run, interventions, curves, classifier and its output on two
    held-out images) before the audit, then writes the report."""
    import jax

    from causalvision.audit import (
        as_classifier,
        audit_classifier,
        effect_curve,
        held_out_examples,
        load_deep_scm,
        parse_do,
        write_report,
    )
    from causalvision.train.data import dataset_of

    def say(line: str) -> None:
        print(line, flush=True)

    if args.num < 2:
        raise ValueError(f"--num: expected at least 2 held-out units, got {args.num}")
    if args.bootstrap < 1:
        raise ValueError(f"--bootstrap: expected at least 1 resample, got {args.bootstrap}")
    if args.patch < 0:
        raise ValueError(f"--patch: expected a block size (0: no maps), got {args.patch}")
    if not (pathlib.Path(args.scm) / "config.json").is_file():
        raise ValueError(f"--scm: {args.scm!r} holds no training run (no config.json)")
    say(f"loading the deep SCM run {args.scm}")
    config, _, scm = load_deep_scm(args.scm, **_image_options(args))
    dataset = dataset_of(config.data)
    interventions = [parse_do(text, dataset) for text in args.do]
    curves = [_parse_curve(text, dataset) for text in args.curve]
    say(f"loading the classifier {args.classifier}")
    if pathlib.Path(args.classifier).is_dir():
        classifier = as_classifier(args.classifier, attribute=args.attribute)
    else:
        if args.attribute is not None:
            raise ValueError("--attribute: names the class attribute of a run directory")
        classifier = as_classifier(_load_callable(args.classifier))
    examples = held_out_examples(config, args.num)
    try:
        classes = classifier(examples["image"][:2]).shape[1]
    except ValueError:
        raise  # as_classifier's checks of the output name what is wrong
    except Exception as error:  # the user's code failing on valid images is bad input
        raise ValueError(
            f"--classifier: {args.classifier!r} failed on 2 held-out images "
            f"({type(error).__name__}: {error})"
        ) from error
    say(f"classifier checked: {classes} classes; auditing {args.num} held-out units")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(args.seed)
    record = audit_classifier(
        scm,
        dataset,
        examples,
        classifier,
        interventions,
        key=key,
        num_bootstrap=args.bootstrap,
        exact=False if args.no_exact else None,
        patch=args.patch or None,
        progress=say,
        show_progress=True,
    )
    curve_results = []
    for index, (node, values) in enumerate(curves):
        say(f"effect curve {index + 1}/{len(curves)}: do({node}) at {len(values)} values")
        curve_results.append(
            effect_curve(
                scm,
                dataset,
                examples,
                classifier,
                node,
                values,
                # Indices past the interventions': the audit folds in 0 .. len - 1.
                key=jax.random.fold_in(key, len(interventions) + index),
                num_bootstrap=args.bootstrap,
            )
        )
    say("writing the report")
    write_report(
        record,
        out,
        title=f"Audit of {args.classifier} on {args.scm}",
        curves=curve_results,
        dataset=dataset,
    )
    print(f"wrote {out / 'report.html'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from causalvision.audit.report import write_run_report

    path = write_run_report(args.run_dir, args.out)
    print(f"wrote {path}")
    return 0


def _print_block(evaluator: str, values: list[tuple[str, float]]) -> None:
    """One evaluator's values, each with its "_std" companion (over images) as "± std"."""
    spread = {name[: -len("_std")]: v for name, v in values if name.endswith("_std")}
    names = {name for name, _ in values}
    print(f"[{evaluator}]")
    for name, value in values:
        if name.endswith("_std") and name[: -len("_std")] in names:
            continue
        std = f" ± {spread[name]:.3g}" if name in spread else ""
        print(f"  {name:58s} {value:.4g}{std}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="causalvision", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="prepare datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    build = data_commands.add_parser("build", help="write a dataset as TFDS array_record files")
    build.add_argument("name", help="a TFDS name of a dataset (causalvision.data.DATASETS)")
    build.add_argument("--size", type=int, default=None, help="examples in the train split")
    build.add_argument("--data-dir", default=None, help="TFDS data directory")
    build.add_argument("--seed", type=int, default=0, help="generator seed")
    build.set_defaults(run=_data_build)

    train = commands.add_parser("train", help="train a model from a config file")
    train.add_argument(
        "config", help="an experiment file with a preset (x.py:tiny) or a run's config.json"
    )
    train.add_argument("--workdir", required=True, help="checkpoints, metrics and plots go here")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (dotted keys allowed); repeatable",
    )
    cluster = train.add_argument_group(
        "multi-host", "one process per host; TPU pods, Slurm and Open MPI are detected"
    )
    cluster.add_argument("--coordinator-address", default=None, help="host:port of process 0")
    cluster.add_argument("--num-processes", type=int, default=None)
    cluster.add_argument("--process-id", type=int, default=None)
    train.set_defaults(run=_train)

    cf = commands.add_parser(
        "counterfactual", help="counterfactual image grid of a trained deep SCM"
    )
    cf.add_argument("--workdir", required=True, help="a deep_scm training run")
    cf.add_argument(
        "--do",
        action="append",
        required=True,
        metavar="NODE=VALUE[,NODE=VALUE]",
        help="an intervention (one grid row each; comma-join for a joint one); repeatable",
    )
    cf.add_argument("--n", type=int, default=16, help="held-out examples (columns)")
    cf.add_argument("--out", default="counterfactuals.png", help="PNG to write")
    cf.add_argument(
        "--pixel-noise",
        choices=("abduct", "mean"),
        default=None,
        help="Gaussian-decoder image models: keep the factual pixel residual (default) or "
        "predict mean images",
    )
    cf.set_defaults(run=_counterfactual)

    evaluate = commands.add_parser(
        "evaluate", help="run a trained run's evaluators (its config's evals, or the task's)"
    )
    evaluate.add_argument(
        "--workdir", required=True, help="a training run (deep SCM, slot autoencoder, ...)"
    )
    evaluate.add_argument("--oracle", default=None, help="an attribute_predictor run")
    evaluate.add_argument("--n", type=int, default=256, help="held-out examples")
    evaluate.add_argument("--out", default=None, help="output directory (default: workdir)")
    evaluate.add_argument(
        "--pixel-noise",
        choices=("abduct", "mean"),
        default=None,
        help="Gaussian-decoder image models: keep the factual pixel residual (exact null "
        "interventions; default) or predict mean images",
    )
    evaluate.set_defaults(run=_evaluate)

    audit = commands.add_parser(
        "audit", help="audit an image classifier with a deep SCM's counterfactuals (HTML report)"
    )
    audit.add_argument("--scm", required=True, help="a deep_scm training run")
    audit.add_argument(
        "--classifier",
        required=True,
        metavar="SPEC",
        help="an attribute_predictor run directory, or FILE.py:FUNCTION / MODULE:FUNCTION "
        "naming a callable from images (N, H, W, C) float32 in [0, 255] to probabilities (N, K)",
    )
    audit.add_argument(
        "--do",
        action="append",
        required=True,
        metavar="NODE=VALUE[,NODE=VALUE]",
        help="an intervention (comma-join for a joint one); repeatable",
    )
    audit.add_argument("--out", required=True, help="directory for report.html, .json, PNGs")
    audit.add_argument("--num", type=int, default=64, help="held-out units")
    audit.add_argument("--seed", type=int, default=0, help="key of the bootstrap")
    audit.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    audit.add_argument(
        "--patch", type=int, default=4, help="effect-map block size in pixels (0: no maps)"
    )
    audit.add_argument(
        "--curve",
        action="append",
        default=[],
        metavar="NODE=V1:V2:STEPS",
        help="an effect curve over STEPS values from V1 to V2; repeatable",
    )
    audit.add_argument("--attribute", default=None, help="the class attribute of a run's head")
    audit.add_argument(
        "--pixel-noise",
        choices=("abduct", "mean"),
        default=None,
        help="Gaussian-decoder image models: keep the factual pixel residual (default) or "
        "predict mean images",
    )
    audit.add_argument(
        "--no-exact",
        action="store_true",
        help="skip the generator's exact counterfactuals (and the generator error)",
    )
    audit.set_defaults(run=_audit)

    report = commands.add_parser(
        "report", help="one self-contained HTML page of an evaluated run (metrics and grids)"
    )
    report.add_argument(
        "run_dir", metavar="RUN", help="an evaluation output directory (with metrics.json)"
    )
    report.add_argument("--out", default=None, help="the page (default: RUN/report.html)")
    report.set_defaults(run=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `causalvision` command; returns the exit status.

    Expected failures (bad input, a busy or unwritable workdir, a full disk, a run that
    diverged) print one line and return 2 (130 when interrupted); a traceback means a bug.
    """
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("causalvision: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not _expected(error):
            raise
        print(f"causalvision: error: {_one_line(error)}", file=sys.stderr)
        return 2


def _expected(error: Exception) -> bool:
    """Bad input (ValueError), the machine's refusal (OSError: a read-only directory, a full
    disk) and a diverged run are the user's to fix; anything else is a bug of ours."""
    if isinstance(error, ValueError | OSError):
        return True
    train = sys.modules.get("causalvision.train.trainer")  # loaded if training ran at all
    return train is not None and isinstance(error, train.NonFiniteLossError)


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror and not isinstance(error.args[0], str):
        # "[Errno 28] No space left on device: 'runs/x/metrics.jsonl'" reads better as
        # "runs/x/metrics.jsonl: No space left on device".
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__


def console() -> None:
    """The installed `causalvision` program: `main` with a persistent compilation cache.

    Set here, not in `main`, so that calling `main` from Python leaves JAX's configuration
    to the caller; JAX_COMPILATION_CACHE_DIR, if set, wins. Set through the environment so
    that JAX is not imported before a command needs it (`--help` answers at once).
    """
    from causalvision import enable_compilation_cache

    enable_compilation_cache()
    raise SystemExit(main())


if __name__ == "__main__":
    console()
