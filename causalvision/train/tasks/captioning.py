"""Image captioning, alone or with See-or-Guess's counterfactual losses (REFERENCE §5.1).

The data is any dataset that captions its own examples: `captions(example)`, a word
`vocabulary()`, and, for the counterfactual losses, `visible(example)` `(N, M)`,
`entity(example, k)` (the words naming object k in the caption) and `mask_object(example,
k)` (the image with object k hidden). The model is `causalvision.nn.Captioner`.

- `effect="none"`: the language-model loss (teacher forcing) on the true captions.
- `effect="total"` / `"direct"`: fine-tunes the captioner of the run `init_from` with
  α·L_LM + (1 − α)·L_TE (or L_NDE). For every training example one visible object k is
  drawn (seeded by `data.seed`); I* is the image with k masked, S* the initial model's
  caption of I* by beam search (`cf_beam` beams, See-or-Guess's 5; 1 is greedy), and the
  entity is k's words in the true caption. Both are computed
  once, before training, by the initial model: See-or-Guess's S* comes from the model being
  fine-tuned at its start, not from the truth.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from causalvision.data import ArraySource, quantize_image
from causalvision.losses import (
    entity_mask,
    mix_with_language_model,
    natural_direct_effect_loss,
    total_effect_loss,
)
from causalvision.nn import Captioner, CaptionerConfig
from causalvision.train.config import Config, structure
from causalvision.train.data import dataset_of, dataset_sources
from causalvision.train.tasks import TaskSpec
from causalvision.train.trainer import Task
from causalvision.validation import check_int, check_real

__all__ = ["EFFECTS", "TASK", "CaptioningSettings", "caption_examples", "real_tokens"]

EFFECTS = ("none", "total", "direct")
CAPTION_KEYS = ("image", "tokens", "token_mask")
EFFECT_KEYS = ("cf_image", "cf_tokens", "cf_token_mask", "entity_ids")
ENTITY_LEN = 4  # longest entity phrase in tokens (e.g. "green squares" is 2)
CHUNK = 256  # examples per chunk when rendering captions and masked images


@dataclasses.dataclass(frozen=True)
class CaptioningSettings:
    """Model settings of the `captioning` task.

    Args:
      captioner: the `CaptionerConfig` (or a dict of its fields); `image_shape` and
        `vocab_size` come from the dataset.
      effect: "none", "total" (L_TE) or "direct" (L_NDE).
      alpha: the language-model loss's weight α (See-or-Guess: 0.999).
      init_from: workdir of the `captioning` run to fine-tune; needed for an effect.
      mask_blur: the masked image's blur (standard deviation, pixels).
      mask_grow: the blurred border's width beyond the box (pixels).
      cf_beam: beams of the search that writes S* (See-or-Guess: 5; 1 is greedy decoding).
    """

    captioner: Any = None
    effect: str = "none"
    alpha: float = 0.999
    init_from: str | None = None
    mask_blur: float = 5.0
    mask_grow: int = 3
    cf_beam: int = 5

    def __post_init__(self):
        values = {} if self.captioner is None else self.captioner
        config = structure(CaptionerConfig, values, "model.captioner")
        object.__setattr__(self, "captioner", config)
        if self.effect not in EFFECTS:
            raise ValueError(f"model.effect: expected one of {EFFECTS}, got {self.effect!r}")
        check_real(self.alpha, "model.alpha", 0.0, 1.0)
        check_real(self.mask_blur, "model.mask_blur", 0.0)
        check_int(self.mask_grow, "model.mask_grow", 0)
        check_int(self.cf_beam, "model.cf_beam", 1)


def _check_init_from(settings: CaptioningSettings) -> None:
    # Checked when the task is built, not in the settings: `--set` overrides arrive one at a
    # time, so effect may be set before init_from.
    if settings.effect != "none" and not isinstance(settings.init_from, str):
        raise ValueError(
            f"model.init_from: effect={settings.effect!r} fine-tunes a trained captioner; "
            f"give the workdir of a `captioning` run, got {settings.init_from!r}"
        )


def _check_captions(dataset: Any) -> Any:
    for method in ("captions", "vocabulary"):
        if not callable(getattr(dataset, method, None)):
            raise ValueError(
                f"data: the captioning task needs a dataset that captions its examples "
                f"(`{method}`); {type(dataset).__name__} does not"
            )
    return dataset


def complete(config: Config, settings: CaptioningSettings) -> CaptioningSettings:
    """The image shape and vocabulary size, from the dataset."""
    dataset = _check_captions(dataset_of(config.data))
    captioner = dataclasses.replace(
        settings.captioner,
        image_shape=tuple(dataset.image_shape),
        vocab_size=len(dataset.vocabulary().tokens),
    )
    return dataclasses.replace(settings, captioner=captioner)


def _rows(source: Any, start: int, stop: int) -> dict[str, np.ndarray]:
    rows = [source[i] for i in range(start, stop)]
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


def caption_examples(dataset: Any, source: Any, max_len: int) -> dict[str, np.ndarray]:
    """Every example of `source` with its true caption encoded: "image" `(N, H, W, C)`,
    "tokens" `(N, max_len)` int32 and "token_mask" `(N, max_len)` bool, and the stored
    fields the counterfactual images need."""
    vocabulary = _check_captions(dataset).vocabulary()
    parts = []
    for start in range(0, len(source), CHUNK):
        rows = _rows(source, start, min(start + CHUNK, len(source)))
        tokens, mask = vocabulary.encode(dataset.captions(rows), max_len)
        parts.append({**rows, "tokens": tokens, "token_mask": mask})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _counterfactuals(
    dataset: Any, examples: dict[str, np.ndarray], settings: CaptioningSettings, seed: int
) -> dict[str, np.ndarray]:
    """I*, the entity's token ids `(N, ENTITY_LEN)` (−1 padded) and the chosen slot `(N,)`:
    one visible object per example, drawn with `seed`, masked."""
    vocabulary = dataset.vocabulary()
    rng = np.random.default_rng(seed)
    num = len(examples["image"])
    cf_image = np.zeros_like(examples["image"])
    entity_ids = np.full((num, ENTITY_LEN), -1, np.int32)
    for start in range(0, num, CHUNK):
        part = {k: v[start : start + CHUNK] for k, v in examples.items()}
        visible = np.asarray(dataset.visible(part))
        if not visible.any(axis=1).all():
            raise ValueError("data: an example shows no object; nothing to mask")
        scores = np.where(visible, rng.random(visible.shape), -1.0)
        slots = scores.argmax(axis=1)
        masked = dataset.mask_object(
            part, slots, blur_radius=settings.mask_blur, grow=settings.mask_grow
        )
        # The dataset renders on [0, 1]; stored images are on its pixel grid (uint8).
        cf_image[start : start + len(slots)] = quantize_image(dataset, masked["image"])
        for k in np.unique(slots):
            rows = np.flatnonzero(slots == k)
            words = dataset.entity({key: v[rows] for key, v in part.items()}, int(k))
            for row, phrase in zip(rows, words, strict=True):
                ids = vocabulary.lookup(phrase.split())[:ENTITY_LEN]
                entity_ids[start + row, : len(ids)] = ids
    return {"cf_image": cf_image, "entity_ids": entity_ids}


def decode_captions(
    model: Captioner, images: np.ndarray, beam: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The model's captions of `images` by beam search with `beam` beams (1: greedy):
    tokens and real-token mask `(N, L)`."""
    if beam == 1:
        decode = nnx.jit(lambda m, x: m.greedy(x)[0])
    else:
        decode = nnx.jit(lambda m, x: m.beam_search(x, beam)[0])
    parts = [
        np.asarray(decode(model, jnp.asarray(images[s : s + CHUNK])))
        for s in range(0, len(images), CHUNK)
    ]
    tokens = np.concatenate(parts)
    return tokens, real_tokens(tokens, model.config.eos_id, model.config.pad_id)


def real_tokens(tokens: np.ndarray, eos_id: int, pad_id: int) -> np.ndarray:
    """`(N, L)` bool: bos, the words and the first eos of decoded captions; not what follows
    the first eos, nor padding."""
    is_eos = tokens == eos_id
    before_first_eos = (np.cumsum(is_eos, axis=1) - is_eos) == 0
    return before_first_eos & (tokens != pad_id)


def _initial_captioner(path: str) -> Captioner:
    from causalvision.train.trainer import load_run

    run_config, result = load_run(path)
    if run_config.task != "captioning":
        raise ValueError(f"model.init_from: holds a {run_config.task!r} run, not a captioning run")
    return result.ema_model if result.ema_model is not None else result.model


def build_model(config: Config) -> Any:
    settings: CaptioningSettings = config.model

    def init_model(rngs: nnx.Rngs) -> Captioner:
        if settings.init_from is None:
            return Captioner(settings.captioner, rngs=rngs)
        model = _initial_captioner(settings.init_from)
        if model.config != settings.captioner:
            raise ValueError(
                f"model.init_from: its captioner is {model.config}, this run's is "
                f"{settings.captioner}"
            )
        return model

    return init_model


def _source(examples: dict[str, np.ndarray], keys: tuple[str, ...]) -> ArraySource:
    return ArraySource({k: examples[k] for k in keys})


def build(config: Config) -> Task:
    settings: CaptioningSettings = config.model
    _check_init_from(settings)
    dataset = _check_captions(dataset_of(config.data))
    max_len = settings.captioner.max_len
    train_raw, eval_raw = dataset_sources(config)
    train = caption_examples(dataset, train_raw, max_len)
    evaluation = caption_examples(dataset, eval_raw, max_len)
    keys = CAPTION_KEYS
    if settings.effect != "none":
        initial = _initial_captioner(settings.init_from)
        for examples, seed in ((train, config.data.seed), (evaluation, config.data.seed + 1)):
            examples.update(_counterfactuals(dataset, examples, settings, seed))
            examples["cf_tokens"], examples["cf_token_mask"] = decode_captions(
                initial, examples["cf_image"], settings.cf_beam
            )
        keys = CAPTION_KEYS + EFFECT_KEYS
    effect_loss = {"total": _total_effect, "direct": _direct_effect}.get(settings.effect)

    def objective(model, batch):
        lm, metrics = model.loss(batch["image"], batch["tokens"], batch["token_mask"])
        if effect_loss is None:
            return lm, metrics
        effect = effect_loss(model, batch)
        metrics = {**metrics, f"{settings.effect}_effect_loss": effect}
        return mix_with_language_model(lm, effect, settings.alpha), metrics

    def loss(model, batch, key):
        del key  # deterministic
        return objective(model, batch)

    def eval_metrics(model, batch, key):
        value, metrics = loss(model, batch, key)
        return {"loss": value, **metrics}

    def prepare(batch):
        out = {k: batch[k] for k in keys}
        for name in ("image", "cf_image"):
            if name in out:
                out[name] = out[name].astype(jnp.float32)
        return out

    return Task(
        init_model=build_model(config),
        loss=loss,
        train_source=_source(train, keys),
        eval_source=_source(evaluation, keys),
        eval_metrics=eval_metrics,
        prepare=prepare,
    )


def _entity(batch) -> jax.Array:
    return entity_mask(batch["tokens"], batch["entity_ids"], batch["token_mask"])


def _total_effect(model: Captioner, batch) -> jax.Array:
    """L_TE: the entity under (I, S) against its mean under (I*, S*)."""
    factual = model.log_probs(batch["image"], batch["tokens"])
    counterfactual = model.log_probs(batch["cf_image"], batch["cf_tokens"])
    return total_effect_loss(
        factual, counterfactual, batch["tokens"], _entity(batch), batch["cf_token_mask"]
    )


def _direct_effect(model: Captioner, batch) -> jax.Array:
    """L_NDE: the entity under (I, S*) against (I*, S*), the mediator held at S*."""
    mixed = model.log_probs(batch["image"], batch["cf_tokens"])
    counterfactual = model.log_probs(batch["cf_image"], batch["cf_tokens"])
    return natural_direct_effect_loss(
        mixed, counterfactual, batch["tokens"], _entity(batch), batch["cf_token_mask"]
    )


TASK = TaskSpec(
    settings=CaptioningSettings,
    build=build,
    build_model=build_model,
    complete=complete,
)
