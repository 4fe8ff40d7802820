"""The deep SCM end to end on a tiny config: train, checkpoint, restore, counterfactuals, CLI."""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from causalvision.audit import held_out_examples, load_deep_scm, parse_do
from causalvision.audit import model_counterfactual as _model_counterfactual
from causalvision.cli import main as cli_main
from causalvision.data import MorphoDigits
from causalvision.nn import HVAE, DeepSCM, GaussianDecoderMechanism, HVAEConfig
from causalvision.nn.image_mechanism import from_pixels
from causalvision.train import load_config, train_and_evaluate

EXPERIMENT = pathlib.Path(__file__).parent.parent / "experiments" / "morpho_hvae.py"
MORPHO = MorphoDigits()
SPECS = MorphoDigits.attribute_specs


def model_counterfactual(scm, examples, do):
    return _model_counterfactual(scm, examples, do, MORPHO)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("deep_scm")
    result = train_and_evaluate(load_config(f"{EXPERIMENT}:tiny"), workdir)
    return workdir, result


def test_training_writes_checkpoints_metrics_and_restores_the_same_model(trained_run):
    workdir, result = trained_run
    assert result.step == 6
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["3", "6"]
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_lines = [r for r in lines if r["split"] == "train"]
    assert [r["step"] for r in train_lines] == [3, 6]
    for r in train_lines:
        assert np.isfinite(r["loss"]) and r["image_kl"] >= 0
        assert r["image_elbo"] == pytest.approx(-(r["image_nll"] + r["image_kl"]), rel=1e-5)
    _, model, _ = load_deep_scm(workdir)
    restored = jax.tree.leaves(nnx.state(model, nnx.Param))
    trained = jax.tree.leaves(nnx.state(result.ema_model, nnx.Param))
    assert all(np.array_equal(a, b) for a, b in zip(restored, trained, strict=True))


def test_counterfactuals_have_the_right_shapes_and_null_interventions_are_exact(trained_run):
    workdir, _ = trained_run
    config, _, scm = load_deep_scm(workdir)
    # 64 examples: model_counterfactual's chunk size, so the direct calls below reuse its
    # compiled counterfactual.
    examples = held_out_examples(config, 64)
    cf = model_counterfactual(scm, examples, {"thickness": 4.0})
    assert cf["image"].shape == (64, 32, 32, 1)
    np.testing.assert_allclose(np.asarray(cf["thickness"]), 4.0)
    assert np.all((np.asarray(cf["image"]) >= 0) & (np.asarray(cf["image"]) <= 255))
    np.testing.assert_array_equal(np.asarray(cf["digit"]), examples["digit"])
    # Intensity is a child of thickness: it moves through the intensity flow's abducted noise.
    moved = np.asarray(cf["intensity"]) - examples["intensity"]
    assert np.all(np.isfinite(moved))

    # do(parent = its factual value) reproduces the image (pixel noise is abducted exactly)...
    factual = {n: jnp.asarray(examples[n]) for n in ("digit", "thickness", "intensity", "image")}
    factual["digit"] = factual["digit"].astype(jnp.int32)
    null = scm.counterfactual(factual, {"thickness": factual["thickness"]})
    np.testing.assert_allclose(np.asarray(null["image"]), examples["image"], atol=2e-3)
    np.testing.assert_allclose(np.asarray(null["intensity"]), examples["intensity"], rtol=1e-4)
    # ... and its mean image equals the model's reconstruction.
    mechanism = scm.mechanisms["image"]
    assert isinstance(mechanism, GaussianDecoderMechanism)
    parents = {n: factual[n] for n in mechanism.parents}
    noise = mechanism.abduct(factual["image"], parents)
    zero_pixel = {"latent": noise["latent"], "pixel": jnp.zeros_like(noise["pixel"])}
    reconstruction = np.asarray(mechanism.reconstruct(factual["image"], parents))
    np.testing.assert_allclose(
        np.asarray(mechanism.predict(zero_pixel, parents)), reconstruction, atol=1e-3
    )
    # With mean-image prediction the null intervention gives exactly that reconstruction.
    _, model, mean_scm = load_deep_scm(workdir, pixel_noise="mean")
    null_mean = mean_scm.counterfactual(factual, {"thickness": factual["thickness"]})
    np.testing.assert_allclose(np.asarray(null_mean["image"]), reconstruction, atol=1e-3)
    with pytest.raises(ValueError, match="pixel_noise: expected 'abduct' or 'mean'"):
        model.scm(pixel_noise="median")


def test_joint_and_digit_interventions(trained_run):
    workdir, _ = trained_run
    config, _, scm = load_deep_scm(workdir)
    examples = held_out_examples(config, 4)
    cf = model_counterfactual(scm, examples, {"digit": 3.0, "intensity": 200.0})
    np.testing.assert_array_equal(np.asarray(cf["digit"]), 3)
    np.testing.assert_allclose(np.asarray(cf["intensity"]), 200.0)
    np.testing.assert_allclose(np.asarray(cf["thickness"]), examples["thickness"], rtol=1e-6)


def test_cli_writes_grid_and_metrics(trained_run, tmp_path):
    workdir, _ = trained_run
    grid = tmp_path / "grid.png"
    status = cli_main(
        [
            "counterfactual",
            "--workdir",
            str(workdir),
            "--do",
            "thickness=4",
            "--n",
            "12",
            "--out",
            str(grid),
        ]
    )
    assert status == 0 and grid.read_bytes()[:4] == b"\x89PNG"
    # 12 examples, as many as the grids show: one compiled counterfactual per intervention
    # serves the metrics, the grids and the command above.
    assert (
        cli_main(["evaluate", "--workdir", str(workdir), "--n", "12", "--out", str(tmp_path)]) == 0
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["composition_l1_1"] < 0.01  # pixel noise is abducted exactly
    assert metrics["gt_error/do(thickness)/l1"] > 0  # an untrained model is not the truth
    assert (tmp_path / "counterfactuals_thickness3.3.png").exists()  # typical high thickness


def test_bad_inputs_are_named(trained_run):
    workdir, _ = trained_run
    with pytest.raises(ValueError, match="--do: expected NODE=VALUE"):
        parse_do("colour=3", MORPHO)
    with pytest.raises(ValueError, match="is not a number"):
        parse_do("thickness=thick", MORPHO)
    with pytest.raises(ValueError, match=r"workdir: .* has no config.json"):
        load_deep_scm(workdir / "checkpoints")
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="image_model: context_dim is 5"):
        tiny = HVAEConfig(
            context_dim=5, widths=(8, 16, 16), encoder="32b1d4,8b1d8,1b1", decoder="1b1,8b1,32b1"
        )
        DeepSCM(SPECS, HVAE(tiny, rngs=rngs), rngs=rngs)


def test_the_vae_deep_scm_trains_and_answers_counterfactuals(tmp_path):
    vae = pathlib.Path(__file__).parent.parent / "experiments" / "morpho_vae.py"
    train_and_evaluate(load_config(f"{vae}:tiny"), tmp_path)
    config, model, scm = load_deep_scm(tmp_path)
    assert type(model.image_model).__name__ == "VAE"
    examples = held_out_examples(config, 4)
    cf = model_counterfactual(scm, examples, {"intensity": 100.0})
    assert cf["image"].shape == (4, 32, 32, 1)
    null = model_counterfactual(scm, examples, {"digit": examples["digit"].astype(np.float32)})
    np.testing.assert_allclose(np.asarray(null["image"]), examples["image"], atol=2e-3)


def _tiny_deep_scm(prior_dropout=None, **hvae_changes) -> DeepSCM:
    config = dataclasses.replace(HVAEConfig.tiny((32, 32, 1), 12), **hvae_changes)
    rngs = nnx.Rngs(0)
    image_model = HVAE(config, rngs=rngs)
    return DeepSCM(SPECS, image_model, prior_dropout=prior_dropout, rngs=rngs)


def test_prior_dropout_zeroes_a_parents_columns_per_image_at_its_rate():
    deep = _tiny_deep_scm({"digit": 0.25})
    names = [name for name, _, _ in deep.image_encoding.spec]
    assert names == ["digit", "thickness", "intensity"]  # digit one-hot in columns 0..9
    assert deep.image_encoding.widths == (10, 1, 1) and deep.image_encoding.size == 12
    mask = np.asarray(deep._prior_keep_mask(jax.random.key(0), 40_000))
    assert mask.shape == (40_000, 12)
    np.testing.assert_array_equal(mask[:, 10:], 1.0)
    assert np.all(mask[:, :10] == mask[:, :1])  # the whole one-hot goes or stays
    dropped = 1.0 - mask[:, 0].mean()
    assert abs(dropped - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 40_000), dropped


def test_prior_dropout_loss_is_the_image_loss_under_the_masked_prior_context():
    deep = _tiny_deep_scm({"digit": 0.5})
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.integers(0, 256, (6, 32, 32, 1)), jnp.float32),
        "digit": jnp.asarray(rng.integers(0, 10, 6), jnp.int32),
        "thickness": jnp.asarray(rng.uniform(1.5, 4.0, 6), jnp.float32),
        "intensity": jnp.asarray(rng.uniform(80, 250, 6), jnp.float32),
    }
    key = jax.random.key(3)
    graphdef, state = nnx.split(deep)

    @jax.jit  # both losses in one program: eager op-by-op HVAEs are slow to run
    def losses(state):
        deep = nnx.merge(graphdef, state)
        total, metrics = deep.loss(batch, key)
        image_key, dropout_key = jax.random.split(key)
        context = deep.image_encoding(batch)
        mask = deep._prior_keep_mask(dropout_key, 6)
        image_loss, _ = deep.image_model.loss(
            from_pixels(batch["image"]), context, image_key, prior_context=context * mask
        )
        return total, metrics, image_loss

    total, metrics, image_loss = losses(state)
    attributes = sum(float(metrics[f"{n}_nll"]) for n in ("thickness", "intensity", "digit"))
    np.testing.assert_allclose(float(total), attributes + float(image_loss), rtol=1e-6)


@pytest.mark.parametrize(
    ("prior_dropout", "changes", "match"),
    [
        ({"colour": 0.3}, {}, "prior_dropout: 'colour' is not an attribute"),
        ({"digit": 1.0}, {}, r"prior_dropout\['digit'\]: expected a probability in \[0, 1\)"),
        ({"digit": -0.1}, {}, r"prior_dropout\['digit'\]: expected a probability"),
        ({"digit": 0.3}, {"conditional_prior": False}, "prior_dropout: needs an image model"),
    ],
)
def test_prior_dropout_errors_name_the_argument(prior_dropout, changes, match):
    with pytest.raises(ValueError, match=match):
        _tiny_deep_scm(prior_dropout, **changes)


@pytest.fixture(scope="module")
def trained_oracle(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("oracle")
    oracle = EXPERIMENT.parent / "morpho_oracle.py"
    overrides = ["trainer.num_steps=4", "trainer.checkpoint_every=4", "trainer.eval_every=4"]
    train_and_evaluate(load_config(f"{oracle}:tiny", overrides), workdir)
    return workdir


def _params(module) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
    return {"/".join(map(str, path)): np.asarray(leaf[...]) for path, leaf in flat}


def test_counterfactual_training_tunes_only_the_image_mechanism(
    trained_run, trained_oracle, tmp_path
):
    from causalvision.train import load_run

    deep_dir, _ = trained_run
    cf_experiment = EXPERIMENT.parent / "morpho_hvae_cf.py"
    overrides = [
        f"model.init_from='{deep_dir}'",
        f"model.oracle='{trained_oracle}'",
        "trainer.eval_every=None",  # the eval step would compile the loss a second time
    ]
    result = train_and_evaluate(load_config(f"{cf_experiment}:tiny", overrides), tmp_path)
    assert result.step == 4
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        assert all(np.isfinite(v) for k, v in line.items() if k not in ("step", "split"))
    assert {"counterfactual_nll", "negative_elbo", "multiplier"} <= set(lines[0])

    tuned = _params(result.model)
    before = {f"deep/{k}": v for k, v in _params(load_run(deep_dir)[1].ema_model).items()}
    before.update(
        {f"predictor/{k}": v for k, v in _params(load_run(trained_oracle)[1].ema_model).items()}
    )
    changed = {k for k, v in before.items() if not np.array_equal(tuned[k], v)}
    assert changed and all(k.startswith("deep/image_model/") for k in changed)
    assert float(tuned["multiplier_raw"]) != 0.0  # the multiplier trains too
    # A tuned run is a deep SCM for the audit and `causalvision evaluate`.
    _, tuned_model, scm = load_deep_scm(tmp_path)
    assert type(tuned_model).__name__ == "CounterfactualTuner"
    assert scm.nodes == result.model.scm().nodes


def test_counterfactual_nll_matches_whole_batch_counterfactuals_per_parent(
    trained_run, trained_oracle
):
    from causalvision.losses import counterfactual_nll
    from causalvision.train import load_run

    deep_dir, _ = trained_run
    config, deep_run = load_run(deep_dir)
    scm = deep_run.ema_model.scm()
    predictor = load_run(trained_oracle)[1].ema_model
    examples = held_out_examples(config, 7)
    batch = {n: jnp.asarray(examples[n], jnp.float32) for n in ("image", "thickness", "intensity")}
    batch["digit"] = jnp.asarray(examples["digit"], jnp.int32)
    key = jax.random.key(3)
    standardise = dict(predictor.standardise)
    parents = ("thickness", "intensity", "digit")
    settings = {"num_classes": predictor.num_classes, "standardise": standardise}
    value = float(counterfactual_nll(scm, predictor, batch, key, parents=parents, **settings))

    # Second computation: every parent's counterfactual of the whole reordered batch, then per
    # image the parent its part was given (7 images: 3 x thickness, 2 x intensity, 2 x digit),
    # scored in float64.
    order = np.asarray(jax.random.permutation(key, 7))
    shuffled = {n: v[order] for n, v in batch.items()}
    donors = {n: jnp.roll(v, -1, axis=0) for n, v in shuffled.items()}
    node_of = ["thickness"] * 3 + ["intensity"] * 2 + ["digit"] * 2
    terms = []
    for node in parents:
        cf = scm.counterfactual(shuffled, {node: donors[node]})
        predictions = {
            k: np.asarray(v, np.float64) for k, v in predictor(cf["image"] / 255.0).items()
        }
        for i in [i for i, n in enumerate(node_of) if n == node]:
            logits = predictions["digit"][i]
            digit = int(cf["digit"][i])
            term = np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[digit]
            for name in ("thickness", "intensity"):
                offset, scale = standardise[name]
                target = (float(cf[name][i]) - offset) / scale
                term += 0.5 * (predictions[name][i] - target) ** 2
            terms.append(term)
    assert donors["digit"][6] == shuffled["digit"][0]  # the last image takes the first's value
    assert value == pytest.approx(np.mean(terms), rel=1e-4)
    two = {n: v[:2] for n, v in batch.items()}  # too few to give every parent an image
    with pytest.raises(ValueError, match="batch: counterfactual training needs at least 3"):
        counterfactual_nll(scm, predictor, two, key, parents=parents, **settings)
