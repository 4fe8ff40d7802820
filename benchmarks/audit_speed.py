"""Issue 18: how many units a classifier audit gets through per second on CPU, for the demo
model (`make demo`'s deep SCM, its attribute oracle's digit head as the classifier).

On `--num` held-out units of the run (`held_out_examples`), with `--bootstrap` resamples:

- "counterfactuals": the deep SCM's counterfactual images under do(intensity) alone
  (`scm_counterfactuals`), the classifier not called;
- "audit": `audit_classifier` under do(intensity=`--intensity`) and do(thickness=
  `--thickness`): per intervention the model's counterfactuals, the direct part's (thickness
  has the mediator intensity), the exact counterfactuals, the classifier on each, the
  bootstrap intervals;
- "effect map": `effect_map` with `--patch`-pixel blocks on the do(intensity) counterfactuals.

Each is timed cold (the first call: compilation included) and warm (the median of `--repeats`
more calls); units/s = units / seconds (for the audit, units through the whole audit of both
interventions). There is no peer: no other library audits a classifier through a deep SCM.

    .venv/bin/python benchmarks/audit_speed.py --scm runs/demo/deep_scm \\
        --classifier runs/demo/oracle                                   # after `make demo`

Writes `benchmarks/results/audit_speed.json` (`--output`: the command, the machine, every
timing, the goal).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    Failure,
    Parser,
    jax_machine_info,
    print_columns,
    require_positive,
    run_main,
    write_results,
)

RESULTS = ROOT / "benchmarks" / "results" / "audit_speed.json"
GOAL = "units audited per second on CPU for the demo model (reported)"


def timed(call: Callable[[], Any], repeats: int) -> dict[str, Any]:
    start = time.perf_counter()
    call()
    cold = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"cold_s": cold, "warm_times_s": times, "warm_s": statistics.median(times)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scm", type=Path, default=ROOT / "runs" / "demo" / "deep_scm",
                        help="a deep SCM run (default: make demo's)")  # fmt: skip
    parser.add_argument("--classifier", type=Path, default=ROOT / "runs" / "demo" / "oracle",
                        help="an attribute predictor run (default: the demo's)")  # fmt: skip
    parser.add_argument("--attribute", default="digit", help="the class attribute it predicts")
    parser.add_argument("--num", type=int, default=256, help="units audited")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--patch", type=int, default=4, help="effect map block size")
    parser.add_argument("--repeats", type=int, default=3, help="warm calls timed")
    parser.add_argument("--intensity", type=float, default=220.0, help="do(intensity) value")
    parser.add_argument("--thickness", type=float, default=4.0, help="do(thickness) value")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    require_positive(parser, args, ("num", "bootstrap", "patch", "repeats"))
    for option in ("scm", "classifier"):
        path = getattr(args, option)
        if not (path / "config.json").exists():
            parser.error(f"--{option}: {path} holds no run (no config.json); run `make demo`")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import jax

    if "JAX_PLATFORMS" not in os.environ:
        jax.config.update("jax_platforms", "cpu")
    from causalvision.audit import (
        as_classifier,
        audit_classifier,
        effect_map,
        held_out_examples,
        load_deep_scm,
        scm_counterfactuals,
    )
    from causalvision.train.data import dataset_of

    try:
        config, _, scm = load_deep_scm(args.scm)
        classifier = as_classifier(str(args.classifier), attribute=args.attribute)
        dataset = dataset_of(config.data)
        interventions = [{"intensity": args.intensity}, {"thickness": args.thickness}]
        examples = held_out_examples(config, args.num)
        classifier(examples["image"][:2])
    except ValueError as error:
        raise Failure(str(error)) from None
    counterfactuals = scm_counterfactuals(scm, dataset)
    key = jax.random.key(0)
    print(f"timing on {args.num} units of {args.scm} ...", flush=True)
    figures = {
        "counterfactuals": timed(lambda: counterfactuals(examples, interventions[0]), args.repeats),
        "audit": timed(
            lambda: audit_classifier(
                scm,
                dataset,
                examples,
                classifier,
                interventions,
                key=key,
                num_bootstrap=args.bootstrap,
            ),
            args.repeats,
        ),
    }
    images = counterfactuals(examples, interventions[0])
    figures["effect map"] = timed(
        lambda: effect_map(classifier, examples["image"], images, patch=args.patch), args.repeats
    )
    for row in figures.values():
        row["units_per_s_cold"] = args.num / row["cold_s"]
        row["units_per_s_warm"] = args.num / row["warm_s"]
    lines = [
        [name, f"{r['cold_s']:.2f}", f"{r['warm_s']:.2f}", f"{r['units_per_s_cold']:.1f}",
         f"{r['units_per_s_warm']:.1f}"]
        for name, r in figures.items()
    ]  # fmt: skip
    print_columns(["stage", "cold s", "warm s", "units/s cold", "units/s warm"], lines)
    audit = figures["audit"]
    goals = [{
        "goal": GOAL,
        "value": {"units_per_s_warm": round(audit["units_per_s_warm"], 2),
                  "units_per_s_cold": round(audit["units_per_s_cold"], 2)},
        "met": audit["units_per_s_warm"] > 0,
    }]  # fmt: skip
    write_results(
        args,
        args.output,
        machine=jax_machine_info(["jax", "flax", "numpy"], None),
        interventions=interventions,
        timings=figures,
        goals=goals,
    )
    return 0


if __name__ == "__main__":
    run_main(main, "audit_speed")
