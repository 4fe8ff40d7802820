# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Auditing a classifier with counterfactuals: does it lean on intensity?
#
# Two digit classifiers, same architecture and budget, trained through the one trainer
# (`experiments/audit_classifier.py`):
#
# - **confounded**: trained on `MorphoDigits(digit_intensity=3.0)`, an SCM with the extra edge
#   digit -> intensity: digits >= 5 are drawn brighter, digits < 5 darker (in training,
#   P(intensity > 159.5 | digit) ≈ 0.996 resp. 0.024). Brightness predicts the label's group.
# - **unconfounded**: trained on the ordinary `MorphoDigits()`, where intensity depends on
#   thickness alone.
#
# Accuracy on training-like data cannot tell which one reads the stroke and which one reads
# the brightness. A counterfactual audit can: re-render each held-out digit with another
# intensity, everything else (digit, thickness, style) kept, and count how often the answer
# changes. The counterfactuals here are the generator's exact ones (`exact_counterfactuals`);
# a trained deep SCM's `SCM` can be passed in their place (`experiments/run_audit.py` does
# that when `make demo` has written one).

# %% tags=["parameters"]
suffix = ""  # experiments/audit_classifier.py preset suffix; "_tiny" for a smoke run
units = 256  # held-out digits audited
num_bootstrap = 1000  # resamples of each interval
num_steps = None  # training steps of each classifier; None: the preset's
workdir = "../runs/notebook_07"

# %%
# %matplotlib inline
import pathlib

import jax
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

import causalvision
from causalvision.audit import (
    as_classifier,
    audit_classifier,
    effect_curve,
    effect_map,
    exact_counterfactuals,
)
from causalvision.audit.counterfactuals import held_out_examples
from causalvision.train import load_config, train_and_evaluate
from causalvision.train.data import dataset_of

causalvision.enable_compilation_cache()  # a program compiled once loads from disk later

EXPERIMENT = "../experiments/audit_classifier.py"
workdir = pathlib.Path(workdir)


def show(figure):
    figure.tight_layout()
    display(figure)  # inline even after the trainer's curves have set the "Agg" backend
    plt.close(figure)


# %% [markdown]
# ## The two training sets
# The confounded SCM shifts intensity's logit by ±δ by digit group; everything else is
# Morpho-MNIST's thickness -> intensity SCM.

# %%
configs = {
    name: load_config(f"{EXPERIMENT}:{name}{suffix}") for name in ("confounded", "unconfounded")
}
figure, axes = plt.subplots(2, 10, figsize=(10, 2.4))
for row, (name, config) in enumerate(configs.items()):
    data = dataset_of(config.data)
    batch = data.sample(jax.random.key(row), 40)
    for digit in range(10):
        index = int(np.flatnonzero(np.asarray(batch["digit"]) == digit)[0])
        ax = axes[row, digit]
        ax.imshow(np.asarray(batch["image"][index, :, :, 0]), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{digit}: i={float(batch['intensity'][index]):.0f}", fontsize=7)
        ax.axis("off")
    axes[row, 0].text(-6, 16, name, fontsize=8, ha="right", va="center")
show(figure)

# %% [markdown]
# ## Train both through the trainer
# Only the digit is a target (`model.targets`), so neither network is asked to read intensity.

# %%
runs = {}
for name, config in configs.items():
    config.trainer.progress = False
    if num_steps is not None:
        t = config.trainer
        t.num_steps = t.log_every = t.eval_every = t.checkpoint_every = num_steps
    runs[name] = workdir / f"{name}{suffix}"
    train_and_evaluate(config, runs[name])
classifiers = {name: as_classifier(run) for name, run in runs.items()}
print(f"trained {', '.join(runs)}: {configs['confounded'].trainer.num_steps} steps each")

# %% [markdown]
# ## The audit
# The units are held-out digits of the *unconfounded* dataset: the world the classifiers
# are used in. Each intervention is audited by flip rate (the share of units whose predicted
# digit changes) and per-class ACE, with 95% percentile-bootstrap intervals over units.
# do(thickness) moves intensity too (its child): `audit_classifier` also reports the direct
# part, with intensity held at its factual value.

# %%
dataset = dataset_of(configs["unconfounded"].data)
examples = held_out_examples(configs["unconfounded"], units)
counterfactuals = exact_counterfactuals(dataset)
interventions = [{"intensity": 90.0}, {"intensity": 230.0}, {"thickness": 3.5}]
records = {
    name: audit_classifier(
        counterfactuals,
        dataset,
        examples,
        classifier,
        interventions,
        key=jax.random.key(0),
        num_bootstrap=num_bootstrap,
        exact=False,  # the counterfactuals are the exact ones already
    )
    for name, classifier in classifiers.items()
}


def interval(entry):
    return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


print(f"{'classifier':<13}{'intervention':<20}{'flip rate':<24}{'direct flip rate':<24}")
for name, record in records.items():
    print(f"{name}: accuracy on unconfounded digits {record['factual_accuracy']['accuracy']:.3f}")
    for row in record["interventions"]:
        direct = interval(row["direct"]["flip_rate"]) if row["direct"] else "-"
        print(f"{'':<13}{row['label']:<20}{interval(row['model']['flip_rate']):<24}{direct:<24}")
for row in interventions:
    label = records["confounded"]["interventions"][interventions.index(row)]["label"]
    a, b = (
        r["interventions"][interventions.index(row)]["model"]["flip_rate"] for r in records.values()
    )
    print(
        f"{label}: flip-rate intervals overlap: {a['low'] <= b['high'] and b['low'] <= a['high']}"
    )

# %% [markdown]
# The ACE per class says *where* the probability goes: under do(intensity = low), the
# confounded classifier moves mass towards digits 0-4.

# %%
figure, axes = plt.subplots(1, 2, figsize=(9, 2.8), sharey=True)
for ax, (name, record) in zip(axes, records.items(), strict=True):
    for row, colour in zip(record["interventions"][:2], ("tab:blue", "tab:orange"), strict=True):
        ace = row["model"]["ace"]
        mean, low, high = (np.asarray(ace[k]) for k in ("mean", "low", "high"))
        ax.errorbar(
            np.arange(10), mean, yerr=[mean - low, high - mean], fmt="o", color=colour,
            label=row["label"], capsize=2,
        )  # fmt: skip
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title(name)
    ax.set_xlabel("digit class k")
    ax.set_xticks(range(10))
axes[0].set_ylabel("ACE on P(class k)")
axes[0].legend(fontsize=7)
show(figure)

# %% [markdown]
# ## An effect curve over intensity
# The flip rate of do(intensity = v) for v across the support (64, 255).

# %%
values = np.linspace(70.0, 250.0, 7 if not suffix else 4)
figure, ax = plt.subplots(figsize=(5, 3))
for name, classifier in classifiers.items():
    curve = effect_curve(
        counterfactuals, dataset, examples, classifier, "intensity", values,
        key=jax.random.key(1), num_bootstrap=num_bootstrap,
    )  # fmt: skip
    flips = curve["flip_rate"]
    ax.plot(values, [f["mean"] for f in flips], marker="o", label=name)
    ax.fill_between(values, [f["low"] for f in flips], [f["high"] for f in flips], alpha=0.2)
    print(f"{name}: flip rate over intensity " + ", ".join(f"{f['mean']:.2f}" for f in flips))
ax.set_xlabel("do(intensity = v)")
ax.set_ylabel("flip rate")
ax.legend()
show(figure)

# %% [markdown]
# ## Which pixels carry the effect
# `effect_map` pastes one 4x4 block of each counterfactual (do(intensity = 90)) into its
# factual image and measures the mean change of the class distribution: a classifier that
# reads brightness reacts wherever the stroke is.

# %%
do_low = counterfactuals(examples, interventions[0])
figure, axes = plt.subplots(1, 3, figsize=(8, 2.8))
axes[0].imshow(np.asarray(examples["image"]).mean(axis=0)[:, :, 0], cmap="gray")
axes[0].set_title("mean factual image", fontsize=8)
maps = {name: effect_map(c, examples["image"], do_low, patch=4) for name, c in classifiers.items()}
top = max(float(m.max()) for m in maps.values())
for ax, (name, block_map) in zip(axes[1:], maps.items(), strict=True):
    shown = ax.imshow(block_map, cmap="magma", vmin=0, vmax=top)
    ax.set_title(f"{name}: max {block_map.max():.3f}", fontsize=8)
    print(f"{name}: effect map of do(intensity=90), largest block change {block_map.max():.3f}")
for ax in axes:
    ax.axis("off")
figure.colorbar(shown, ax=axes[1:].tolist(), shrink=0.8)
display(figure)
plt.close(figure)
