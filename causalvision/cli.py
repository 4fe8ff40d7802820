"""The `causalvision` command.

  causalvision data build NAME [--size N] [--data-dir DIR] [--seed S]
  causalvision train CONFIG --workdir DIR [--set key=value ...]
      [--coordinator-address HOST:PORT --num-processes N --process-id K]

Heavy imports happen inside each sub-command so `causalvision --help` is instant.
"""

from __future__ import annotations

import argparse
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="causalvision", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="prepare datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    build = data_commands.add_parser("build", help="write a dataset as TFDS array_record files")
    build.add_argument("name", help="dataset name, e.g. morpho_digits or pendulum")
    build.add_argument("--size", type=int, default=None, help="examples in the train split")
    build.add_argument("--data-dir", default=None, help="TFDS data directory")
    build.add_argument("--seed", type=int, default=0, help="generator seed")
    build.set_defaults(run=_data_build)

    train = commands.add_parser("train", help="train a model from a config file")
    train.add_argument("config", help="path to a config file in experiments/, e.g. x.py:tiny")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `causalvision` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:  # bad input: one clear line, no traceback
        print(f"causalvision: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
