"""Start-up time of the `causalvision` command and of `import causalvision`.

  python benchmarks/cli_startup.py              # 7 runs of each, median and spread
  python benchmarks/cli_startup.py --repeat 15

Each figure is a fresh interpreter, timed from the outside, beside a bare `python -c pass`
and `import jax` on the same machine (the floor and what a lazy import avoids). The
argument error is `causalvision train` without its arguments, which argparse refuses.

Goal (the reliability issue): `causalvision --help` and argument errors answer in well under
a second (it took 5-7 s; `import causalvision` 7.3 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, host_info, print_columns, write_results

GOAL_SECONDS = 0.5

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import jax": [sys.executable, "-c", "import jax"],
    "import causalvision": [sys.executable, "-c", "import causalvision"],
    "causalvision --help": [sys.executable, "-m", "causalvision.cli", "--help"],
    "causalvision train (argument error)": [sys.executable, "-m", "causalvision.cli", "train"],
}


def wall_times(command: list[str], repeat: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="fresh interpreters per figure")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/cli_startup.json")
    args = parser.parse_args()

    timings = {}
    for name, command in COMMANDS.items():
        print(f"{name} ...", flush=True)
        timings[name] = wall_times(command, args.repeat)
    print()
    print_columns(
        ("command", "median s", "min s", "max s"),
        [
            (name, f"{statistics.median(t):.3f}", f"{min(t):.3f}", f"{max(t):.3f}")
            for name, t in timings.items()
        ],
    )
    goals = []
    for name in ("causalvision --help", "causalvision train (argument error)"):
        median = statistics.median(timings[name])
        goals.append(
            {
                "goal": f"{name} in well under a second (< {GOAL_SECONDS} s)",
                "value": f"{median:.3f} s median of {args.repeat} "
                f"(import jax alone: {statistics.median(timings['import jax']):.2f} s)",
                "met": median < GOAL_SECONDS,
            }
        )
    machine = host_info(("causalvision", "jax", "jaxlib", "flax"))
    write_results(args, args.output, machine=machine, timings_seconds=timings, goals=goals)


if __name__ == "__main__":
    main()
