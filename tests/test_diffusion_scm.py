"""The diffusion autoencoder as a deep SCM's image mechanism: abduction by DDIM inversion or
re-noising, the strength control, training and evaluation through the one trainer."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from flax import nnx

from causalvision.audit import evaluate_run
from causalvision.cli import main as cli_main
from causalvision.nn import DiffusionAutoEncoder, ParentEncoding
from causalvision.scm import SCM, Root
from causalvision.train import load_config

EXPERIMENT = pathlib.Path(__file__).parent.parent / "experiments" / "diffusion_scm.py"
ENCODING = ParentEncoding([("a", "continuous", (0.0, 1.0))])
NUM = 4


@pytest.fixture(scope="module")
def model():
    config = DiffusionAutoEncoder.Config.tiny((16, 16, 1), ENCODING.size)
    return nnx.jit(lambda: DiffusionAutoEncoder(config, rngs=nnx.Rngs(0)))()


@pytest.fixture(scope="module")
def units():
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.integers(0, 256, (NUM, 16, 16, 1)), jnp.float32)
    return {"a": jnp.asarray([0.1, 0.4, 0.6, 0.9], jnp.float32), "image": image}


def _round_trip(mechanism, units, key=None):
    parents = {"a": units["a"]}
    run = jax.jit(lambda m, x, pa, key: m.predict(m.abduct(x, pa, key), pa))
    return np.asarray(run(mechanism, units["image"], parents, key))


def test_ddim_inversion_alone_reproduces_the_image_over_part_of_the_chain(model, units):
    """Without the residual, do(parent = factual) is decode(invert(x)): exact in the limit of
    small steps. An untrained network is no consistent denoiser, so the whole chain drifts
    (inverted x_T keeps x_0 only at scale √ᾱ_T); over half of a 50-step chain it holds to
    0.65 of 255 levels on average (max 5.9), over a fifth to 0.2 (max 1.5)."""
    errors = {}
    for strength in (0.2, 0.5):
        mechanism = model.mechanism(ENCODING, pixel_noise="none", num_steps=50, strength=strength)
        errors[strength] = np.abs(_round_trip(mechanism, units) - np.asarray(units["image"]))
    assert errors[0.2].mean() < 0.3 and errors[0.2].max() < 2.5
    assert errors[0.5].mean() < 1.0 and errors[0.5].max() < 8.0
    assert errors[0.2].mean() < errors[0.5].mean()


def test_the_residual_makes_null_interventions_exact_for_both_abductions(model, units):
    inverted = model.mechanism(ENCODING)  # the config's defaults: invert, 10 steps, all of it
    assert inverted.exact_abduction and inverted.num_steps == 10
    np.testing.assert_allclose(_round_trip(inverted, units), units["image"], atol=2e-3)
    renoised = model.mechanism(ENCODING, abduction="renoise", strength=0.6)
    assert not renoised.exact_abduction
    first = _round_trip(renoised, units, jax.random.key(1))
    np.testing.assert_allclose(first, units["image"], atol=2e-3)
    with pytest.raises(ValueError, match="key: re-noising"):
        renoised.abduct(units["image"], {"a": units["a"]})
    # Fresh noise per key, and one draw per posterior sample.
    noise = [renoised.abduct(units["image"], {"a": units["a"]}, jax.random.key(k)) for k in (1, 2)]
    assert not np.allclose(noise[0]["x"], noise[1]["x"])
    draws = renoised.abduct(units["image"], {"a": units["a"]}, jax.random.key(1), num_samples=3)
    assert draws["x"].shape == (3, NUM, 16, 16, 1)
    assert not np.allclose(draws["x"][0], draws["x"][1])


def test_counterfactuals_move_more_with_more_strength(model, units):
    parents, moved = {"a": units["a"]}, {"a": 1.0 - units["a"]}
    distances = []
    for strength in (0.1, 0.5, 1.0):
        mechanism = model.mechanism(ENCODING, strength=strength)
        run = jax.jit(lambda m, x: m.predict(m.abduct(x, parents), moved))
        change = np.abs(np.asarray(run(mechanism, units["image"])) - np.asarray(units["image"]))
        distances.append(change.mean())
    assert 0 < distances[0] < distances[1] < distances[2]


def _root():
    return Root(dist.Uniform(0.0, 1.0))


def test_the_scm_engine_drives_it_like_any_image_node(model, units):
    scm = SCM({"a": _root(), "image": model.mechanism(ENCODING)})
    factual = {"a": units["a"], "image": units["image"]}
    twin = scm.counterfactual(factual, {"a": jnp.full((NUM,), 0.5)})
    assert twin["image"].shape == (NUM, 16, 16, 1)
    assert np.all((np.asarray(twin["image"]) >= 0) & (np.asarray(twin["image"]) <= 255))
    assert not np.allclose(twin["image"], units["image"], atol=1.0)
    samples = scm.sample(jax.random.key(3), 2)
    assert samples["image"].shape == (2, 16, 16, 1)


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"strength": 0.0}, "strength"),
        ({"strength": 1.5}, "strength"),
        ({"abduction": "guess"}, "abduction"),
        ({"num_steps": 101}, "num_steps"),
        ({"pixel_noise": "mean"}, "pixel_noise"),
    ],
)
def test_bad_mechanism_options_are_refused(model, options, argument):
    with pytest.raises(ValueError, match=argument):
        model.mechanism(ENCODING, **options)


def test_bad_configs_and_calls_are_refused(model, units):
    config = DiffusionAutoEncoder.Config
    for fields, argument in (
        ({"image_shape": (16, 8, 1)}, "config.image_shape"),
        ({"image_shape": (12, 12, 1), "encoder_widths": (4, 4, 4)}, "config.encoder_widths"),
        ({"schedule": "sigmoid"}, "config.schedule"),
        ({"ddim_steps": 2_000}, "config.ddim_steps"),
        ({"abduction": "noise"}, "config.abduction"),
    ):
        with pytest.raises(ValueError, match=argument):
            DiffusionAutoEncoder(config(**fields), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="strength: sampling from the prior"):
        model.mechanism(ENCODING, strength=0.5).sample_noise(jax.random.key(0), 2)
    x = units["image"] / 127.5 - 1.0
    with pytest.raises(ValueError, match="prior_context"):
        model.loss(x, units["a"][:, None], jax.random.key(0), prior_context=units["a"][:, None])
    with pytest.raises(ValueError, match="x: expected shape"):
        model.loss(x[:, :8], units["a"][:, None], jax.random.key(0))


def test_pendulum_trains_semi_supervised_and_evaluates_against_the_truth(tmp_path):
    run = tmp_path / "run"
    half = ["--set", "model.labelled_fraction=0.5"]  # half the images come without attributes
    assert cli_main(["train", f"{EXPERIMENT}:pendulum_tiny", "--workdir", str(run), *half]) == 0
    evals = {
        "composition": {"type": "composition", "cycles": 2},
        "ground_truth": {"type": "ground_truth"},
    }
    metrics = evaluate_run(run, tmp_path / "eval", num=4, evals=evals)
    assert metrics["composition_l1_1"] < 0.01  # the residual is abducted: null is exact
    for node in ("angle", "light", "shadow_length", "shadow_position"):
        assert 0 < metrics[f"gt_error/do({node})/l1"] < 255


def test_every_preset_is_a_valid_config():
    for preset in ("morpho", "pendulum", "morpho_demo", "pendulum_demo", "morpho_tiny"):
        config = load_config(f"{EXPERIMENT}:{preset}")
        assert config.model.image_model == "diffusion"
        assert config.model.image.ddim_steps <= config.model.image.num_train_steps
    with pytest.raises(ValueError, match="preset: expected"):
        load_config(f"{EXPERIMENT}:nonsense")
