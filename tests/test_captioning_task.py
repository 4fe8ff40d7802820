"""The captioning task: true captions encoded from the data, See-or-Guess's counterfactual
inputs (masked object, its entity tokens, the initial model's caption of the masked image),
and baseline, TE and NDE runs through the one trainer."""

import json
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from causalvision.cli import main as cli_main
from causalvision.data import get_dataset
from causalvision.losses import entity_mask
from causalvision.train import load_config, load_run
from causalvision.train.config import complete_config
from causalvision.train.data import dataset_sources
from causalvision.train.tasks import build_model, build_task
from causalvision.train.tasks.captioning import (
    CaptioningSettings,
    _counterfactuals,
    caption_examples,
    real_tokens,
)

EXPERIMENT = pathlib.Path(__file__).parent.parent / "experiments" / "captioning.py"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    run = tmp_path_factory.mktemp("captioning") / "baseline"
    assert cli_main(["train", f"{EXPERIMENT}:tiny", "--workdir", str(run)]) == 0
    return run


def _lines(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def examples():
    config = load_config(f"{EXPERIMENT}:tiny")
    dataset = get_dataset(config.data.name, **config.data.options)
    train, _ = dataset_sources(config)
    return dataset, caption_examples(dataset, train, config.model.captioner.max_len)


def test_the_true_captions_are_encoded_from_the_scenes(examples):
    dataset, rows = examples
    stored = {k: v for k, v in rows.items() if k not in ("tokens", "token_mask")}
    expected = dataset.captions(stored)
    assert dataset.vocabulary().decode(rows["tokens"]) == expected
    lengths = rows["token_mask"].sum(axis=1)
    assert (rows["tokens"][np.arange(len(lengths)), lengths - 1] == 2).all()  # eos last


def test_the_masked_object_is_one_the_caption_names(examples):
    dataset, rows = examples
    settings = CaptioningSettings()
    cf = _counterfactuals(dataset, rows, settings, seed=0)
    entity = np.asarray(entity_mask(rows["tokens"], cf["entity_ids"], rows["token_mask"]))
    # Every row's entity ("colour noun") is found in its caption, as many tokens as it has.
    np.testing.assert_array_equal(entity.sum(axis=1), (cf["entity_ids"] >= 0).sum(axis=1))
    assert (entity.sum(axis=1) == 2).all()
    # I* is the factual image outside the hidden object's grown box, on the same pixel grid.
    changed = (cf["cf_image"] != rows["image"]).any(axis=-1)
    assert cf["cf_image"].dtype == rows["image"].dtype
    assert 0 < changed.mean() < 0.5
    assert abs(cf["cf_image"].mean() - rows["image"].mean()) < 0.25 * rows["image"].mean()
    again = _counterfactuals(dataset, rows, settings, seed=0)
    np.testing.assert_array_equal(again["entity_ids"], cf["entity_ids"])  # seeded


def test_decoded_captions_end_at_their_first_eos():
    tokens = np.asarray([[1, 5, 2, 6, 2], [1, 5, 6, 7, 8], [1, 2, 0, 0, 0]])
    np.testing.assert_array_equal(
        real_tokens(tokens, eos_id=2, pad_id=0),
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]],
    )


@pytest.mark.parametrize("effect", ["total", "direct"])
def test_counterfactual_fine_tuning_starts_from_the_baseline(baseline, effect, tmp_path):
    run = tmp_path / effect
    overrides = ["--set", f"model.effect={effect}", "--set", f"model.init_from={baseline}"]
    assert cli_main(["train", f"{EXPERIMENT}:tiny", "--workdir", str(run), *overrides]) == 0
    lines = _lines(run)
    first = next(line for line in lines if line["split"] == "train")
    values = [line[f"{effect}_effect_loss"] for line in lines]
    assert all(np.isfinite(values)) and all(v != 0 for v in values)
    # α = 0.999: the loss is almost all language model.
    effect_loss = first[f"{effect}_effect_loss"]
    assert abs(first["loss"] - (0.999 * first["nll"] + 0.001 * effect_loss)) < 1e-3


def test_fine_tuning_starts_from_the_initial_runs_weights(baseline):
    overrides = ["model.effect=direct", f"model.init_from={baseline}"]
    config = complete_config(load_config(f"{EXPERIMENT}:tiny", overrides))
    model = build_model(config)(nnx.Rngs(0))
    _, initial = load_run(baseline)
    expected = initial.ema_model if initial.ema_model is not None else initial.model
    for got, want in zip(
        jax.tree.leaves(nnx.state(model, nnx.Param)),
        jax.tree.leaves(nnx.state(expected, nnx.Param)),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("beam", [1, 3])
def test_counterfactual_captions_are_the_initial_models_beam_search(baseline, beam):
    overrides = ["model.effect=total", f"model.init_from={baseline}", f"model.cf_beam={beam}"]
    config = complete_config(load_config(f"{EXPERIMENT}:tiny", overrides))
    rows = build_task(config).train_source.arrays
    _, initial = load_run(baseline)
    model = initial.ema_model if initial.ema_model is not None else initial.model
    images = jax.numpy.asarray(rows["cf_image"][:16], jax.numpy.float32)
    expected = model.greedy(images)[0] if beam == 1 else model.beam_search(images, beam)[0]
    np.testing.assert_array_equal(rows["cf_tokens"][:16], expected)
    np.testing.assert_array_equal(
        rows["cf_token_mask"][:16], real_tokens(np.asarray(expected), eos_id=2, pad_id=0)
    )


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"model\.effect"):
        CaptioningSettings(effect="indirect")
    with pytest.raises(ValueError, match=r"model\.alpha"):
        CaptioningSettings(alpha=1.5)
    with pytest.raises(ValueError, match=r"model\.cf_beam"):
        CaptioningSettings(cf_beam=0)
    run = str(tmp_path / "run")
    assert cli_main(["train", f"{EXPERIMENT}:tiny", "--workdir", run, "--set",
                     "model.effect=total"]) == 2  # fmt: skip
    assert cli_main(["train", f"{EXPERIMENT}:tiny", "--workdir", run, "--set",
                     "data.name=morpho_digits", "--set", "data.options={}"]) == 2  # fmt: skip
