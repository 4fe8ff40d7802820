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
# # 04 · Objects as slots, scored against exact instance masks
#
# `sprite_scenes` draws 2-6 coloured shapes from an explicit SCM (each object's shape,
# colour, size and position are nodes), so every pixel's object is known exactly, after
# occlusion. A **slot attention** autoencoder (Locatello et al. 2020) learns, without any
# labels, to explain each image as a few slots, each decoded to an image and an alpha mask.
# How well the slots find the objects is measured by FG-ARI against the true masks.
#
# The same generator gives **sparse perturbation pairs**: a scene and its exact
# counterfactual with one object's property changed, the weak supervision of OC-CRL.

# %% tags=["parameters"]
preset = "cpu"  # experiments/slots.py preset; "tiny" for a smoke run
num_steps = 600  # training steps (the cpu preset's full run is 2,500, ~20 minutes)
num_examples = 64  # held-out scenes scored
workdir = "../runs/notebook_04"

# %%
# %matplotlib inline
import pathlib

import jax
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

import causalvision
from causalvision.audit import evaluate_run, segmentation_colours
from causalvision.train import load_config, train_and_evaluate
from causalvision.train.data import dataset_of

causalvision.enable_compilation_cache()  # a program compiled once loads from disk later

workdir = pathlib.Path(workdir)
config = load_config(
    f"../experiments/slots.py:{preset}",
    [f"trainer.num_steps={num_steps}", "trainer.progress=False"],
)
scenes = dataset_of(config.data)

# %% [markdown]
# ## Scenes and their exact instance masks

# %%
batch = scenes.sample(jax.random.key(0), 8)
masks = np.asarray(scenes.instance_masks(batch))
colours = segmentation_colours(scenes.max_objects + 1)
fig, axes = plt.subplots(2, 8, figsize=(12, 3.2))
for k in range(8):
    axes[0, k].imshow(np.asarray(batch["image"][k]))
    axes[1, k].imshow(colours[masks[k]])
    axes[0, k].set_title(f"{int(batch['num_objects'][k])} objects", fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
plt.tight_layout()
display(fig)  # inline even after the trainer has set the "Agg" backend
plt.close(fig)

# %% [markdown]
# ## Train the slot autoencoder with the one trainer, then score its slots

# %%
result = train_and_evaluate(config, workdir / "run")
print(f"trained {result.step} steps")
metrics = evaluate_run(workdir / "run", workdir / "eval", num=num_examples)
print(
    f"FG-ARI {metrics['fg_ari']:.3f} over {int(metrics['fg_ari_images'])} scenes, "
    f"mean best overlap {metrics['mbo']:.3f}"
)

# %% [markdown]
# Rows: the image, its reconstruction, each pixel's strongest slot, the true objects, then
# what each slot draws (its masked reconstruction).

# %%
image = plt.imread(workdir / "eval" / "slots.png")
fig = plt.figure(figsize=(10, 10))
plt.imshow(image)
plt.axis("off")
display(fig)  # inline even after the trainer has set the "Agg" backend
plt.close(fig)

# %% [markdown]
# ## A sparse perturbation pair
# One object's property changes; the rest of the scene is re-rendered from the same noise,
# so the two images differ only where that object was or is.

# %%
first, second, changed = scenes.perturbation_pairs(jax.random.key(1), 1)
names = scenes.PROPERTIES
slot, prop = int(changed["slot"][0, 0]), names[int(changed["property"][0, 0])]
difference = np.abs(np.asarray(second["image"][0]) - np.asarray(first["image"][0])).sum(-1)
fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.6))
for ax, picture, title in (
    (axes[0], first["image"][0], "scene"),
    (axes[1], second["image"][0], f"object {slot}: {prop} changed"),
    (axes[2], difference, "|difference|"),
):
    ax.imshow(np.asarray(picture))
    ax.set_title(title, fontsize=8)
    ax.axis("off")
plt.tight_layout()
display(fig)  # inline even after the trainer has set the "Agg" backend
plt.close(fig)
print(
    f"object {slot}'s {prop}: {float(changed['old'][0, 0]):.3g} -> "
    f"{float(changed['new'][0, 0]):.3g}; pixels changed: {int((difference > 0).sum())}"
)
