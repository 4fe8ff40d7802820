"""Unsupervised object discovery: a slot attention autoencoder trained to reconstruct images.

The images of any dataset (`config.data`); the model is `causalvision.nn.SlotAttentionAutoEncoder`
with its sizes in `model.autoencoder` (resolution and channels filled from the dataset).
`causalvision evaluate` scores a run's slot masks against the dataset's exact instance masks
(FG-ARI, mean best overlap) and writes mask and reconstruction grids.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from flax import nnx

from causalvision.nn import SlotAttentionAutoEncoder, SlotAttentionAutoEncoderConfig
from causalvision.train.config import Config, structure
from causalvision.train.data import SelectKeys, dataset_of, dataset_sources
from causalvision.train.tasks import TaskSpec
from causalvision.train.trainer import Task

__all__ = ["TASK", "SlotSettings"]


@dataclasses.dataclass(frozen=True)
class SlotSettings:
    """Model settings of the `slot_autoencoder` task.

    Args:
      autoencoder: the autoencoder's sizes (a `SlotAttentionAutoEncoderConfig` or a dict of
        its fields); `resolution` and `channels` come from the dataset.
    """

    autoencoder: Any = None

    def __post_init__(self):
        values = {} if self.autoencoder is None else self.autoencoder
        config = structure(SlotAttentionAutoEncoderConfig, values, "model.autoencoder")
        object.__setattr__(self, "autoencoder", config)


def complete(config: Config, settings: SlotSettings) -> SlotSettings:
    """The image side and channels, from the dataset (square images only)."""
    height, width, channels = dataset_of(config.data).image_shape
    if height != width:
        raise ValueError(f"data: slot attention needs square images, got {height}x{width}")
    autoencoder = dataclasses.replace(settings.autoencoder, resolution=height, channels=channels)
    return dataclasses.replace(settings, autoencoder=autoencoder)


def build_model(config: Config) -> Any:
    def init_model(rngs: nnx.Rngs) -> SlotAttentionAutoEncoder:
        return SlotAttentionAutoEncoder(config.model.autoencoder, rngs=rngs)

    return init_model


def build(config: Config) -> Task:
    """Mean squared reconstruction error of images scaled to [-1, 1] (the paper's loss)."""
    train_source, eval_source = dataset_sources(config, ("image",))

    def prepare(batch):  # stored on the 0-255 scale
        return {"image": batch["image"].astype(jnp.float32) / 127.5 - 1.0}

    def loss(model, batch, key):
        mse, _ = model.loss(batch["image"], key)
        return mse, {"mse": mse}

    def eval_metrics(model, batch, key):
        mse, _ = model.loss(batch["image"], key)
        return {"mse": mse}

    return Task(
        init_model=build_model(config),
        loss=loss,
        train_source=train_source,
        eval_source=eval_source,
        eval_metrics=eval_metrics,
        prepare=prepare,
        transforms=(SelectKeys(("image",)),),
    )


def object_evals(config: Config) -> dict[str, dict[str, Any]]:
    """FG-ARI and mean best overlap against the exact instance masks, and the grids."""
    del config
    return {"object_discovery": {"type": "object_discovery"}}


TASK = TaskSpec(
    settings=SlotSettings,
    build=build,
    build_model=build_model,
    complete=complete,
    evals=object_evals,
)
