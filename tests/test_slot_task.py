"""The slot autoencoder task through the trainer, and object discovery scored exactly."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from causalvision.audit import ModelSubject, ObjectDiscovery, evaluate_run
from causalvision.cli import main as cli_main
from causalvision.data import SpriteScenes, get_dataset
from causalvision.train import load_config, load_run, train_and_evaluate

EXPERIMENTS = pathlib.Path(__file__).parents[1] / "experiments"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("slots")
    train_and_evaluate(load_config(f"{EXPERIMENTS / 'slots.py'}:tiny"), workdir)
    return workdir


def test_a_run_restores_exactly_and_its_sizes_come_from_the_data(tiny_run):
    config, result = load_run(tiny_run)
    assert config.model.autoencoder.resolution == 32
    assert config.model.autoencoder.channels == 3
    images = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
    key = jax.random.key(1)
    _, again = load_run(tiny_run)
    np.testing.assert_array_equal(
        result.model(images, key=key)["reconstruction"],
        again.model(images, key=key)["reconstruction"],
    )


def test_evaluate_writes_object_metrics_and_the_slot_grid(tiny_run, tmp_path, capsys):
    assert (
        cli_main(["evaluate", "--workdir", str(tiny_run), "--n", "8", "--out", str(tmp_path)]) == 0
    )
    printed = capsys.readouterr().out
    assert "[object_discovery]" in printed and "fg_ari" in printed
    metrics = evaluate_run(tiny_run, tmp_path, num=8)
    assert -1.0 <= metrics["fg_ari"] <= 1.0 and 0.0 <= metrics["mbo"] <= 1.0
    assert metrics["fg_ari_images"] == 8
    assert (tmp_path / "slots.png").stat().st_size > 1_000
    # Options that only a deep SCM's evaluation reads are refused, not ignored.
    for option in (["--oracle", str(tiny_run)], ["--pixel-noise", "mean"]):
        assert cli_main(["evaluate", "--workdir", str(tiny_run), *option]) == 2
        assert capsys.readouterr().err.count("\n") == 1


class MaskModel:
    """A stand-in model whose slot masks are given: each slot one object, or all in slot 0."""

    def __init__(self, masks: np.ndarray, num_slots: int, merge: bool):
        self.masks, self.num_slots, self.merge = masks, num_slots, merge

    def __call__(self, images, key=None):
        ids = np.zeros_like(self.masks) if self.merge else self.masks
        one_hot = jax.nn.one_hot(jnp.asarray(ids), self.num_slots, axis=1)[..., None]
        return {
            "masks": one_hot,
            "reconstruction": images,
            "recons": jnp.broadcast_to(images[:, None], (*one_hot.shape[:-1], 3)),
        }


def _scores(model, examples, dataset):
    from flax import nnx

    # ObjectDiscovery jit-compiles the model call: wrap the stand-in in a pure function.
    class Wrapped(nnx.Module):
        def __call__(self, images, key=None):
            return model(images, key)

    subject = ModelSubject(Wrapped(), examples, dataset, jax.random.key(0))
    return dict(ObjectDiscovery(batch_size=16).run(subject))


def test_object_discovery_scores_perfect_and_merged_slots_exactly():
    dataset = SpriteScenes(max_objects=3, min_objects=2, image_size=32)
    examples = jax.tree.map(np.asarray, dataset.sample(jax.random.key(3), 16))
    examples["image"] = np.round(examples["image"] * 255).astype(np.uint8)
    true = np.asarray(dataset.instance_masks(examples))
    perfect = _scores(MaskModel(true, 4, merge=False), examples, dataset)
    assert perfect["fg_ari"] == pytest.approx(1.0) and perfect["mbo"] == pytest.approx(1.0)
    # Every object in one slot: no pair of objects told apart, ARI exactly 0 wherever two
    # objects are visible (an image showing one object scores 1 under the savi convention).
    merged = _scores(MaskModel(true, 4, merge=True), examples, dataset)
    visible = np.array([len(set(np.unique(t)) - {0}) for t in true])
    assert merged["fg_ari"] == pytest.approx(np.mean(visible < 2))


def test_object_discovery_needs_instance_masks():
    dataset = get_dataset("pendulum", image_size=32)
    examples = jax.tree.map(np.asarray, dataset.sample(jax.random.key(0), 2))
    subject = ModelSubject(None, examples, dataset, jax.random.key(0))
    with pytest.raises(ValueError, match="object_discovery needs a dataset that draws"):
        list(ObjectDiscovery().run(subject))
