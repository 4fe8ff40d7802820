"""What every benchmark script shares: versions, the command line, tables and the JSON file.

Standard library only: the deep-SCM benchmark's peer worker imports it under a
PyTorch-only interpreter.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def host_info(packages: Sequence[str]) -> dict[str, Any]:
    """The machine a benchmark ran on, and the versions of `packages` installed there."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "versions": {p: version(p) or "not installed" for p in packages},
    }


def python_path() -> str:
    """The interpreter, relative to the repository when it lives there (a venv)."""
    executable = Path(sys.executable).absolute()
    return str(executable.relative_to(ROOT)) if executable.is_relative_to(ROOT) else sys.executable


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_columns(header: Sequence[str], lines: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns under a dashed header rule."""
    lines = [tuple(header), *map(tuple, lines)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for k, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def write_results(args: argparse.Namespace, output: Path, **results: Any) -> None:
    """`output` as JSON: the command that reproduces it, its settings, then `results`."""
    record = {
        "command": " ".join([python_path(), *sys.argv]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **results,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {output}")


def worker_result(
    command: Sequence[str], env: dict[str, str] | None = None
) -> tuple[dict[str, Any] | None, str]:
    """Runs a peer worker subprocess and reads the JSON of its last stdout line: `(result,
    "")`, or `(None, why)` when it failed or reported {"skipped": why}."""
    done = subprocess.run(list(command), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return None, f"failed: {tail[0]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "skipped" in result:
        return None, result["skipped"]
    return result, ""


def jax_machine_info(packages: Sequence[str], peer: dict[str, Any] | None) -> dict[str, Any]:
    """`host_info` plus JAX's platform, devices and XLA flags, and the peer's versions."""
    import jax

    info: dict[str, Any] = {
        **host_info(packages),
        "jax_platforms": os.environ.get("JAX_PLATFORMS", "cpu (set by the benchmark)"),
        "jax_devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if peer is not None:
        info["peer_versions"] = peer["versions"]
    return info


class Failure(Exception):
    """An expected failure of a benchmark: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are `Failure`s (one line, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise Failure(message)


def run_main(main: Callable[[], int], name: str) -> NoReturn:
    """`sys.exit(main())`, with a `Failure` printed as one line `NAME: error: ...`, status 2."""
    try:
        sys.exit(main())
    except Failure as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(2)


def require_positive(
    parser: argparse.ArgumentParser, args: argparse.Namespace, options: Sequence[str]
) -> None:
    """`parser.error` (one line) for the first of `options` (attribute names) below 1."""
    for option in options:
        if getattr(args, option) < 1:
            parser.error(
                f"--{option.replace('_', '-')}: expected >= 1, got {getattr(args, option)}"
            )


def parse_seeds(parser: argparse.ArgumentParser, text: str) -> list[int]:
    """ "0,1,2" -> [0, 1, 2]: distinct integers >= 0, else `parser.error` (one line)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {text!r}")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        parser.error(f"--seeds: expected distinct integers >= 0, got {text!r}")
    return seeds


def timed_training(config: Any, workdir: Path) -> dict[str, Any]:
    """Train `config` into `workdir` (`train_and_evaluate`) and its figures: wall seconds
    (compilation included), and the median of the train lines' `steps_per_second` (the
    first, which holds the compilation, left out when there are others) times the batch."""
    from causalvision.train import read_metrics, train_and_evaluate

    start = time.perf_counter()
    train_and_evaluate(config, workdir)
    seconds = time.perf_counter() - start
    lines = read_metrics(workdir / "metrics.jsonl")
    train_lines = lines.get("train", [])
    rates = [line["steps_per_second"] for line in train_lines[1:] or train_lines]
    steps_per_s = statistics.median(rates) if rates else None
    batch = config.trainer.batch_size
    return {
        "train_seconds": seconds,
        "steps": train_lines[-1]["step"] if train_lines else None,
        "batch": batch,
        "learning_rate": config.trainer.learning_rate,
        "steps_per_s": steps_per_s,
        "samples_per_s": steps_per_s and steps_per_s * batch,
        "last_loss": train_lines[-1]["loss"] if train_lines else None,
        "eval": lines["eval"][-1] if lines.get("eval") else None,
    }
