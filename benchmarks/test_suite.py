"""Wall time of the test suite on a clean clone of the repository, and its slowest tests.

  python benchmarks/test_suite.py                      # clone HEAD, run the suite, write JSON
  python benchmarks/test_suite.py --repeat 2           # twice, for the machine's noise

`make test` is ruff plus pytest; CI runs it on a clean clone with 2 cores. This clones the
committed HEAD into a temporary directory and times pytest there as `make test` runs it
(the Makefile's PYTEST_ARGS: one worker per core, a file per worker), with this
interpreter's packages and the clone's code first on the path; ruff and the install are not
timed. `--serial` times one process instead. The suite's own figure (pytest's "passed in")
and the 20 slowest tests go to `benchmarks/results/test_suite.json`.

Goal (the extension-seams issue): `make test` under 8 minutes on a quiet 2-core machine,
every test still run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, print_columns, version, write_results

GOAL_SECONDS = 8 * 60
SUMMARY = re.compile(r"(\d+) passed.* in ([\d.]+)s")
DURATION = re.compile(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)", re.MULTILINE)


def make_test_args(clone: Path) -> list[str]:
    """The pytest arguments of `make test` (the Makefile's PYTEST_ARGS)."""
    match = re.search(r"^PYTEST_ARGS := (.*)$", (clone / "Makefile").read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit("Makefile: no PYTEST_ARGS line")
    return match.group(1).split()


def run_suite(clone: Path, serial: bool) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(clone))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the suite makes its own, empty
    env.pop("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", None)
    args = ["-q"] if serial else make_test_args(clone)
    command = [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "--durations=20"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    summary = SUMMARY.search(done.stdout)
    if done.returncode != 0 or summary is None:
        tail = (done.stdout + done.stderr)[-3000:]
        raise SystemExit(f"the suite failed in the clone (exit {done.returncode}):\n{tail}")
    slowest = [
        {"seconds": float(s), "phase": phase, "test": name}
        for s, phase, name in DURATION.findall(done.stdout)
    ]
    return {
        "tests_passed": int(summary.group(1)),
        "pytest_seconds": float(summary.group(2)),
        "wall_seconds": wall,
        "slowest": slowest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of the whole suite")
    parser.add_argument("--serial", action="store_true", help="one pytest process")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/test_suite.json")
    args = parser.parse_args()

    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    runs = []
    with tempfile.TemporaryDirectory(prefix="causalvision-suite-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        for k in range(args.repeat):
            print(f"run {k + 1}/{args.repeat} on a clean clone of {commit[:7]} ...", flush=True)
            runs.append(run_suite(clone, args.serial))
            print(f"  {runs[-1]['tests_passed']} passed in {runs[-1]['pytest_seconds']:.0f} s")
    best = min(run["pytest_seconds"] for run in runs)
    print()
    print_columns(
        ("seconds", "phase", "test"),
        [(f"{t['seconds']:.1f}", t["phase"], t["test"]) for t in runs[-1]["slowest"]],
    )
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "versions": {p: version(p) for p in ("jax", "jaxlib", "flax", "optax", "pytest")},
    }
    goals = [
        {
            "goal": "make test (pytest) under 8 minutes on a quiet 2-core machine, every test run",
            "value": f"{best / 60:.1f} min ({best:.0f} s, {runs[-1]['tests_passed']} tests)",
            "met": best < GOAL_SECONDS,
        }
    ]
    write_results(args, args.output, commit=commit, machine=machine, runs=runs, goals=goals)


if __name__ == "__main__":
    main()
