"""The worked audit of issue 18: does a digit classifier lean on intensity?

Trains (or reuses) the "confounded" and "unconfounded" classifiers of
`experiments/audit_classifier.py`, then audits both on the same held-out *unconfounded* Morpho
digits under do(intensity = low), do(intensity = high) and do(thickness = thin / thick). The
counterfactual images come from a trained deep SCM run (`--deep-scm`, default `runs/demo/
deep_scm`, which `make demo` writes) or, where there is none, from the generator's exact
counterfactuals (`exact_counterfactuals`, said so in the output). It asserts nothing: it prints
and writes (`--out`, JSON) each classifier's flip rate and ACE on its factual class with 95%
bootstrap intervals, and whether the two classifiers' intervals overlap.

  .venv/bin/python experiments/run_audit.py --workdir runs/audit
  .venv/bin/python experiments/run_audit.py --workdir runs/audit --preset-suffix _tiny --units 48
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from causalvision.audit import (
    as_classifier,
    audit_classifier,
    exact_counterfactuals,
    scm_counterfactuals,
)
from causalvision.audit.counterfactuals import held_out_examples, load_deep_scm
from causalvision.train import load_config, train_and_evaluate
from causalvision.train.data import dataset_of

HERE = pathlib.Path(__file__).parent
CLASSIFIERS = ("confounded", "unconfounded")
#: Interventions inside the supports: intensity in (64, 255), thickness > 0.5 px.
INTERVENTIONS = (
    {"intensity": 90.0},
    {"intensity": 230.0},
    {"thickness": 1.5},
    {"thickness": 3.5},
)


def train_classifiers(
    workdir: str | pathlib.Path, suffix: str = "", overrides: Sequence[str] = ()
) -> dict[str, pathlib.Path]:
    """Train (or resume) both classifiers through the trainer; their run directories."""
    runs = {}
    for name in CLASSIFIERS:
        config = load_config(f"{HERE / 'audit_classifier.py'}:{name}{suffix}", overrides)
        runs[name] = pathlib.Path(workdir) / name
        train_and_evaluate(config, runs[name])
    return runs


def overlap(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Whether two intervals {"low", "high"} overlap."""
    return a["low"] <= b["high"] and b["low"] <= a["high"]


def audit(
    runs: Mapping[str, str | pathlib.Path],
    *,
    deep_scm: str | pathlib.Path | None = None,
    units: int = 256,
    interventions: Sequence[Mapping[str, float]] = INTERVENTIONS,
    seed: int = 0,
    num_bootstrap: int = 1000,
    image_options: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Audit each classifier run on the same held-out unconfounded units; a JSON-ready dict.

    Returns {"counterfactuals": which model made them, "units", "classifiers": per classifier
    its "factual_accuracy" and per intervention label "flip_rate" and "ace_on_factual"
    ({"mean", "low", "high"}; with a deep SCM also "exact_flip_rate" and
    "exact_ace_on_factual" on the generator's exact counterfactuals), "overlap": per label,
    whether the two classifiers' intervals overlap}. "ace_on_factual" is the audit's
    "ace_factual_class", mean_n p*(ĉ_n) − p(ĉ_n) with ĉ_n the unit's factual prediction: the
    per-class ACE averages units of all digits, where a shift towards digits < 5 and one away
    from them cancel; this follows each unit's own answer.
    """
    reference = load_config(str(pathlib.Path(runs["unconfounded"]) / "config.json"))
    with_exact = False
    if deep_scm is not None and (pathlib.Path(deep_scm) / "config.json").is_file():
        config, _, scm = load_deep_scm(deep_scm, **(image_options or {}))
        dataset = dataset_of(config.data)
        images = scm_counterfactuals(scm, dataset)
        source = f"deep SCM {deep_scm} {dict(image_options or {})}"
        with_exact = True  # beside the generator's exact ones: how much is the SCM's error
    else:
        dataset = dataset_of(reference.data)
        images = exact_counterfactuals(dataset)
        source = f"exact (the generator's; no deep SCM run at {deep_scm})"
    # Held-out units of the unconfounded dataset: the distribution the classifiers serve.
    examples = held_out_examples(reference, units)
    say(f"counterfactuals: {source}; {units} held-out units")
    out: dict[str, Any] = {"counterfactuals": source, "units": units, "classifiers": {}}
    for index, (name, run) in enumerate(runs.items()):
        record = audit_classifier(
            images,
            dataset,
            examples,
            as_classifier(run),
            list(interventions),
            key=jax.random.fold_in(jax.random.key(seed), index),
            num_bootstrap=num_bootstrap,
            exact=with_exact,
        )
        rows = {}
        for row in record["interventions"]:
            exact = row["exact"]
            rows[row["label"]] = {
                "flip_rate": row["model"]["flip_rate"],
                # With the mediators (intensity under do(thickness)) held at their factual
                # values: what is left is the effect that does not travel through them.
                "direct_flip_rate": row["direct"] and row["direct"]["flip_rate"],
                "ace_on_factual": row["model"]["ace_factual_class"],
                "exact_flip_rate": exact and exact["flip_rate"],
                "exact_ace_on_factual": exact and exact["ace_factual_class"],
            }
        accuracy = record["factual_accuracy"]
        out["classifiers"][name] = {
            "run": str(run),
            "factual_accuracy": accuracy and accuracy["accuracy"],
            "interventions": rows,
        }
    first, second = (out["classifiers"][n]["interventions"] for n in CLASSIFIERS)
    metrics = ("flip_rate", "ace_on_factual")
    if with_exact:
        metrics += ("exact_flip_rate", "exact_ace_on_factual")
    out["overlap"] = {
        label: {metric: overlap(first[label][metric], second[label][metric]) for metric in metrics}
        for label in first
    }
    return out


def report(result: Mapping[str, Any], say: Callable[[str], None] = print) -> None:
    """Print the table: flip rate and ACE on the factual class, with intervals."""
    say(f"counterfactuals: {result['counterfactuals']}, {result['units']} units")
    for name, entry in result["classifiers"].items():
        say(f"{name}: factual accuracy {entry['factual_accuracy']:.3f}")
        for label, row in entry["interventions"].items():
            f, a = row["flip_rate"], row["ace_on_factual"]
            say(
                f"  {label:<20} flip rate {f['mean']:.3f} [{f['low']:.3f}, {f['high']:.3f}]  "
                f"ACE on factual class {a['mean']:+.3f} [{a['low']:+.3f}, {a['high']:+.3f}]"
            )
            if row["exact_flip_rate"]:
                e, ea = row["exact_flip_rate"], row["exact_ace_on_factual"]
                say(
                    f"  {'':<20} exact cf: flip rate {e['mean']:.3f} [{e['low']:.3f}, "
                    f"{e['high']:.3f}]  ACE on factual class {ea['mean']:+.3f} "
                    f"[{ea['low']:+.3f}, {ea['high']:+.3f}]"
                )
            if row["direct_flip_rate"]:
                d = row["direct_flip_rate"]
                say(
                    f"  {'':<20} direct (mediators held) flip rate {d['mean']:.3f} "
                    f"[{d['low']:.3f}, {d['high']:.3f}]"
                )
    for label, o in result["overlap"].items():
        line = f"{label:<20} intervals overlap: flip rate {o['flip_rate']}, "
        line += f"ACE {o['ace_on_factual']}"
        if "exact_flip_rate" in o:
            line += f"; exact cf: flip rate {o['exact_flip_rate']}, ACE {o['exact_ace_on_factual']}"
        say(line)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/audit", help="where the classifiers train")
    parser.add_argument("--confounded", help="an existing confounded classifier run")
    parser.add_argument("--unconfounded", help="an existing unconfounded classifier run")
    parser.add_argument("--deep-scm", default="runs/demo/deep_scm", help="a deep SCM run")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--pixel-noise", choices=("abduct", "mean"), default=None,
                        help="the deep SCM's image abduction (default: its own)")  # fmt: skip
    parser.add_argument("--preset-suffix", default="", help="e.g. _tiny")
    parser.add_argument("--out", help="JSON file (default: <workdir>/audit.json)")
    args = parser.parse_args(argv)
    if args.confounded and args.unconfounded:
        runs = {"confounded": args.confounded, "unconfounded": args.unconfounded}
    else:
        runs = train_classifiers(args.workdir, args.preset_suffix)
    options = {} if args.pixel_noise is None else {"pixel_noise": args.pixel_noise}
    result = audit(runs, deep_scm=args.deep_scm, units=args.units, image_options=options)
    report(result)
    out = pathlib.Path(args.out or pathlib.Path(args.workdir) / "audit.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
