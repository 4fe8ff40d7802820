"""The `causalvision` command.

  causalvision data build NAME [--size N] [--data-dir DIR] [--seed S]
  causalvision train CONFIG --workdir DIR [--set key=value ...]
  causalvision counterfactual --workdir DIR --do NODE=VALUE[,NODE=VALUE] [--n 16] [--out F]
  causalvision evaluate --workdir DIR [--oracle ORACLE_RUN] [--n 256] [--out DIR]
      [--coordinator-address HOST:PORT --num-processes N --process-id K]

Heavy imports happen inside each sub-command so `causalvision --help` is instant.

The installed program keeps JAX's persistent compilation cache in $CAUSALVISION_CACHE_DIR
(default ~/.cache/causalvision/jax; set it empty to switch the cache off): a resumed or
repeated run loads its compiled train step instead of compiling it again (a 32x32 HVAE's
step, traced and compiled on 2 CPU cores: 32 s cold, 10 s on a restart).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Sequence


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
    default = pathlib.Path.home() / ".cache" / "causalvision" / "jax"
    cache = os.environ.get("CAUSALVISION_CACHE_DIR", str(default))
    if cache:
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", cache)
    raise SystemExit(main())


if __name__ == "__main__":
    console()
