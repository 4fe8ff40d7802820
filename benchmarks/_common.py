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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
