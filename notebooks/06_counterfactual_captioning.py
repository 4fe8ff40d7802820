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
# # 06 · Seeing or guessing: counterfactual captioning
#
# A captioner trained on data where two objects almost always appear together can learn to
# name one because it sees the other. Here the data is built so that this happens and so
# that we can count it exactly: **captioned scenes** of coloured shapes whose *theme*, never
# drawn, confounds two shapes. A "starry" scene (40%) has a star in slot 0 and, 90% of the
# time, a triangle in slot 1; stars and triangles appear nowhere else. Every caption is
# computed from the scene ("a red star, a blue triangle and two green squares"), and so is
# the set of objects really in it.
#
# We train a small captioner, hide an object (mask it as See-or-Guess does, or remove it
# from the scene by an intervention do(present_k = 0)), and ask whether the caption still
# names it: CHAIR counts exactly those guessed mentions. Then we fine-tune with
# See-or-Guess's total-effect loss and compare.

# %% tags=["parameters"]
preset = "cpu"  # experiments/captioning.py preset; "tiny" for a smoke run
num_steps = 3_000  # baseline training steps (the cpu preset's own; ~2 minutes on 2 CPU cores)
ft_steps = 1_000  # TE fine-tuning steps (a third of the baseline's)
num_eval = 256  # held-out scenes evaluated
beam = 3  # beam size of the decoding
workdir = "../runs/notebook_06"

# %%
# %matplotlib inline
import os

import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from IPython.display import display

import causalvision
from causalvision.data import GeneratedSource, quantize_image, stack_examples
from causalvision.metrics.captioning import ObjectVocabulary, chair, cider_d
from causalvision.train import load_config, load_run, train_and_evaluate
from causalvision.train.data import dataset_of

causalvision.enable_compilation_cache()  # a program compiled once loads from disk later

EXPERIMENT = "../experiments/captioning.py"


def show(images, titles, columns=4):
    """Images `(N, H, W, 3)` in 0-255 with a caption above each."""
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(np.clip(image, 0, 255).astype(np.uint8))
        ax.set_title(title, fontsize=7, loc="left")
    figure.tight_layout()
    display(figure)  # inline even after the trainer's curves have set the "Agg" backend
    plt.close(figure)


# %% [markdown]
# ## The scenes and their confounder
# The scenes come from the dataset's SCM; the eval scenes below use a seed the training
# never sees. Counting in the training scenes shows the confounder the captioner will learn.

# %%
config = load_config(f"{EXPERIMENT}:{preset}")
scenes = dataset_of(config.data)
train_scenes = GeneratedSource(scenes, config.data.size, seed=config.data.seed)
counted = min(len(train_scenes), 1_024)
train_objects = scenes.true_objects(stack_examples([train_scenes[i] for i in range(counted)]))
with_star = [objects for objects in train_objects if "star" in objects]
share = np.mean(["triangle" in objects for objects in with_star]) if with_star else 0.0
print(f"training scenes naming a star: {len(with_star)} of {counted}; of those, "
      f"{100 * share:.0f}% also name a triangle")  # fmt: skip

held_out = GeneratedSource(scenes, num_eval, seed=config.data.seed + 2)
factual = stack_examples([held_out[i] for i in range(num_eval)])
show(factual["image"][:8], scenes.captions(factual)[:8])

# %% [markdown]
# ## A baseline captioner
# A CNN encoder and a small transformer decoder trained with the language-model loss (teacher
# forcing on the true captions) by the generic trainer. Checkpoints, metrics and curves go to
# `workdir`; run the cell again and it resumes.

# %%
baseline_dir = os.path.join(workdir, "baseline")
config = load_config(
    f"{EXPERIMENT}:{preset}", [f"trainer.num_steps={num_steps}", "trainer.progress=False"]
)
result = train_and_evaluate(config, baseline_dir)
print(f"trained the baseline {result.step} steps")

# %% [markdown]
# ## Hiding one object
# For every held-out scene one visible object is drawn and hidden in two ways:
#
# - **masked**: See-or-Guess's I*, the object's box filled black and blurred at its border;
# - **removed**: the exact counterfactual do(present_k = 0), the scene rendered without it.
#
# Each hidden image has its own true caption and objects. A caption's mention is
# *hallucinated* when its object is not in the image: CHAIR_i is the share of hallucinated
# mentions, CHAIR_s the share of captions with at least one. CIDEr-D scores the captions of
# the factual images against their true captions.

# %%
rng = np.random.default_rng(0)
visible = np.asarray(scenes.visible(factual))
slots = np.where(visible, rng.random(visible.shape), -1.0).argmax(axis=1)
hidden_shape = np.asarray([scenes.shapes[int(factual[f"shape_{k}"][i])]
                           for i, k in enumerate(slots)])  # fmt: skip
kinds = {
    "factual": factual,
    "masked": scenes.mask_object(factual, slots),
    "removed": scenes.remove_object(factual, slots),
}
images = {
    # Masked and removed images are rendered in [0, 1]: onto the 0-255 grid of the data.
    kind: np.asarray(
        quantize_image(scenes, x["image"]) if kind != "factual" else x["image"], np.float32
    )
    for kind, x in kinds.items()
}
truth = {kind: scenes.true_objects(x) for kind, x in kinds.items()}
references = [[c] for c in scenes.captions(factual)]
objects = ObjectVocabulary(scenes.object_vocabulary())
decode = nnx.jit(lambda model, x: model.beam_search(x, beam_size=beam)[0])


def captions_of(run_dir):
    """The run's beam-search captions of every kind of image."""
    _, trained = load_run(run_dir)
    model = trained.ema_model if trained.ema_model is not None else trained.model
    vocabulary = scenes.vocabulary()
    return {kind: vocabulary.decode(np.asarray(decode(model, x))) for kind, x in images.items()}


def report(name, captions):
    scores = {kind: chair(captions[kind], truth[kind], objects) for kind in images}
    cider = cider_d(captions["factual"], references)
    print(f"{name}: CIDEr-D {100 * cider:.1f}; CHAIR_i factual "
          f"{100 * scores['factual']['chair_i']:.1f}%, masked "
          f"{100 * scores['masked']['chair_i']:.1f}%, removed "
          f"{100 * scores['removed']['chair_i']:.1f}%; CHAIR_s masked "
          f"{100 * scores['masked']['chair_s']:.1f}%, removed "
          f"{100 * scores['removed']['chair_s']:.1f}%")  # fmt: skip
    for kind in ("masked", "removed"):
        for gone, kept in (("star", "triangle"), ("triangle", "star")):
            rows = [i for i in range(num_eval) if hidden_shape[i] == gone
                    and kept in truth[kind][i] and gone not in truth[kind][i]]  # fmt: skip
            named = sum(gone in objects.mentions(captions[kind][i]) for i in rows)
            print(f"  {kind}, {gone} hidden, {kept} visible: {gone} still named in "
                  f"{named} of {len(rows)} captions")  # fmt: skip
    return cider, scores


baseline = captions_of(baseline_dir)
baseline_scores = report("baseline", baseline)
shown = 4
show(
    [images[kind][i] for i in range(shown) for kind in images],
    [
        f"{kind}\ntrue: {scenes.captions(kinds[kind])[i]}\nmodel: {baseline[kind][i]}"
        for i in range(shown)
        for kind in images
    ],
    columns=3,
)

# %% [markdown]
# ## Fine-tuning on the effect of the object
# See-or-Guess asks how much the masked region causes the word that names it. With I the
# image, I* the image with object k masked, S the true caption, S* the initial model's
# caption of I*, and e the words naming k in S:
#
# - the **total effect** TE = Y(I, M(I)) − Y(I*, M(I*)) compares the entity's
#   log-probability where S names it, given the real image, against its mean over S*'s
#   positions given I*: both the image and the words before (the mediator M) change;
# - the **natural direct effect** NDE = Y(I, M(I*)) − Y(I*, M(I*)) holds the mediator at
#   S*: only the image changes.
#
# The loss is α·L_LM + (1 − α)·L_TE (or L_NDE) with α = 0.999; minimising it makes the
# caption name the object *because it is seen*. Two deliberate departures from the
# See-or-Guess code (`causalvision.losses.counterfactual_captioning`):
#
# 1. the entity is read at the position that *predicts* it in S; the reference's index
#    omits the 32 query slots BLIP-2 prepends, so it reads a logit inside the query prefix,
#    unrelated to the entity;
# 2. the counterfactual means average over S*'s real positions only; the reference averages
#    over every position, query slots and padding included, so its value depends on how much
#    padding a batch happens to hold.
#
# The fine-tuning starts from the baseline's weights at a tenth of its learning rate.

# %%
te_dir = os.path.join(workdir, "te")
base_lr = config.trainer.learning_rate
te_config = load_config(
    f"{EXPERIMENT}:{preset}",
    [
        "model.effect=total",
        f"model.init_from={baseline_dir}",
        f"trainer.num_steps={ft_steps}",
        f"trainer.learning_rate={base_lr / 10}",
        f"trainer.warmup_steps={min(config.trainer.warmup_steps // 10, ft_steps - 1)}",
        "trainer.progress=False",
    ],
)
te_result = train_and_evaluate(te_config, te_dir)
print(f"fine-tuned with TE {te_result.step} steps")

# %% [markdown]
# ## Baseline against +TE
# The same held-out scenes, the same hidden objects, the same decoding.

# %%
te = captions_of(te_dir)
te_scores = report("+TE", te)
for name, (cider, scores) in (("baseline", baseline_scores), ("+TE", te_scores)):
    print(f"{name:>8}: CIDEr-D {100 * cider:5.1f} | CHAIR_i masked "
          f"{100 * scores['masked']['chair_i']:5.1f}% removed "
          f"{100 * scores['removed']['chair_i']:5.1f}%")  # fmt: skip
