"""CausalDiffAE's causal encoder: the latent SCM over one block per causal variable, its
label-aligned prior with KL annealing, semi-supervised training, and counterfactuals through
the SCM engine."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from flax import nnx

from causalvision.graph import CausalGraph
from causalvision.nn import DiffusionAutoEncoder, LatentSCM, ParentEncoding
from causalvision.scm import SCM, AdditiveNoise, Root
from causalvision.train import load_config
from causalvision.train.data import LabelledSubset
from causalvision.train.tasks.deep_scm import complete

# A chain a -> b -> c with d apart, declared out of order: blocks follow the topological order.
GRAPH = CausalGraph([("b", "c"), ("a", "b")], nodes=["d", "c", "b", "a"])
ENCODING = ParentEncoding(
    [("digit", "categorical", 3), ("a", "continuous", (0.5, 0.25)), ("b", "continuous", (0, 1))]
)
LAYOUT = (("digit", 3), ("a", 1), ("b", 1))
NUM = 4


def _causal_config(**fields):
    config = DiffusionAutoEncoder.Config.tiny((16, 16, 1), ENCODING.size)
    causal = {
        "causal_variables": ("a", "b"),
        "causal_edges": (("a", "b"),),
        "context_layout": LAYOUT,
        "block_size": 2,
        "latent_size": 2,
        "kl_anneal_steps": 10,
    }
    return dataclasses.replace(config, **{**causal, **fields})


@pytest.fixture(scope="module")
def model():
    return nnx.jit(lambda: DiffusionAutoEncoder(_causal_config(), rngs=nnx.Rngs(0)))()


@pytest.fixture(scope="module")
def units():
    rng = np.random.default_rng(0)
    return {
        "digit": jnp.asarray([0, 1, 2, 1]),
        "a": jnp.asarray([0.3, 0.4, 0.6, 0.8], jnp.float32),
        "b": jnp.asarray([-1.0, 0.0, 0.5, 1.5], jnp.float32),
        "image": jnp.asarray(rng.integers(0, 256, (NUM, 16, 16, 1)), jnp.float32),
    }


@pytest.fixture(scope="module")
def loss():
    """`model.loss(x, context, key, step=step, labelled=labelled)`, compiled: eager, each call
    took seconds."""
    return nnx.jit(
        lambda m, x, context, key, step, labelled: m.loss(
            x, context, key, step=step, labelled=labelled
        )
    )


def test_the_latent_scm_follows_the_graph():
    scm = LatentSCM(GRAPH, 3, rngs=nnx.Rngs(0))
    assert scm.variables == ("a", "b", "c", "d")
    np.testing.assert_array_equal(
        scm.adjacency, [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    )
    # z_i depends on u_j exactly when j is i or an ancestor of i: the Jacobian of one unit.
    noise = jax.random.normal(jax.random.key(0), (1, 4, 3))
    jacobian = jax.jacobian(lambda u: scm(u[None])[0])(noise[0])  # (V, B, V, B)
    depends = np.abs(np.asarray(jacobian)).sum(axis=(1, 3)) > 1e-6  # [i, j]: z_i on u_j
    ancestors_or_self = np.eye(4, dtype=bool)
    ancestors_or_self[1, 0] = ancestors_or_self[2, 0] = ancestors_or_self[2, 1] = True
    np.testing.assert_array_equal(depends, ancestors_or_self)
    # Roots pass their noise through; noise() inverts the structural equations.
    z = scm(noise)
    np.testing.assert_array_equal(z[:, 0], noise[:, 0])
    np.testing.assert_array_equal(z[:, 3], noise[:, 3])
    np.testing.assert_allclose(scm.noise(z), noise, atol=1e-6)


def test_the_latent_scm_refuses_bad_input():
    with pytest.raises(ValueError, match="graph: expected a CausalGraph"):
        LatentSCM([("a", "b")], 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="block_size"):
        LatentSCM(GRAPH, 0, rngs=nnx.Rngs(0))
    scm = LatentSCM(GRAPH, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"noise: expected shape \(N, 4, 2\)"):
        scm(jnp.zeros((1, 4, 3)))
    with pytest.raises(ValueError, match="blocks: expected shape"):
        scm.noise(jnp.zeros((4, 2)))


def test_the_causal_encoder_takes_its_blocks_from_the_config(model):
    assert model.causal_variables == ("a", "b")
    np.testing.assert_array_equal(model.latent_scm.adjacency, [[0, 1], [0, 0]])
    assert model.label_columns == (3, 4) and model.other_columns == (0, 1, 2)
    config = model.config
    assert config.latent_width == 2 * 2 + 2
    assert config.cond_size == 3 + config.latent_width  # the digit's columns and the latent
    context = jnp.asarray([[0, 1, 0, 0.5, -2.0]], jnp.float32)
    np.testing.assert_array_equal(model.label_means(context), [[0.5, -2.0]])
    offsets = model.endogenous_latent(jnp.zeros((1, 6)), context)
    np.testing.assert_array_equal(offsets, [[0.5, 0.5, -2.0, -2.0, 0.0, 0.0]])


def _images(units):
    return units["image"] / 127.5 - 1.0


def test_the_label_aligned_prior_is_half_the_squared_distance_to_the_labels(model, units, loss):
    x, context, key = _images(units), ENCODING(units), jax.random.key(5)
    _, metrics = loss(model, x, context, key, None, None)
    # The loss's own draw: the first half of the key samples u ~ q(u | x).
    mean, log_var = model.encode(x)
    key_latent, _ = jax.random.split(key)
    u = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key_latent, mean.shape)
    z = np.asarray(model.semantic_latent(u))
    labels = np.asarray(context)[:, [3, 4]]
    expected = 0.5 * ((z[:, 0:2] - labels[:, :1]) ** 2 + (z[:, 2:4] - labels[:, 1:]) ** 2)
    np.testing.assert_allclose(metrics["label_kl"], expected.sum(axis=1).mean(), rtol=1e-5)
    # The free latent (the last two entries) is not aligned with any label.
    np.testing.assert_allclose(
        metrics["kl"],
        np.mean(0.5 * np.sum(mean**2 + np.exp(log_var) - log_var - 1.0, axis=1)),
        rtol=1e-5,
    )


def test_kl_annealing_ramps_both_kl_terms(model, units, loss):
    x, context, key = _images(units), ENCODING(units), jax.random.key(5)
    for step, ramp in ((0, 0.0), (5, 0.5), (10, 1.0), (1000, 1.0), (None, 1.0)):
        total, metrics = loss(model, x, context, key, step, None)
        assert float(metrics["kl_ramp"]) == ramp
        config = model.config
        kls = config.kl_weight * metrics["kl"] + config.label_weight * metrics["label_kl"]
        np.testing.assert_allclose(total, metrics["eps_mse"] + ramp * kls, rtol=1e-5)


def test_unlabelled_units_train_without_their_parents(model, units, loss):
    x, context, key = _images(units), ENCODING(units), jax.random.key(5)
    labelled = jnp.asarray([True, False, True, False])
    total, metrics = loss(model, x, context, key, None, labelled)
    # What an unlabelled unit's parents say changes nothing: they are never read.
    scrambled = context.at[1].set(jnp.asarray([0, 0, 1, 7.0, -7.0])).at[3].set(9.0)
    total_scrambled, _ = loss(model, x, scrambled, key, None, labelled)
    np.testing.assert_allclose(total, total_scrambled, rtol=1e-6)
    # The label-aligned term averages over the labelled units alone.
    mean, log_var = model.encode(x)
    key_latent, _ = jax.random.split(key)
    z = model.semantic_latent(
        mean + jnp.exp(0.5 * log_var) * jax.random.normal(key_latent, mean.shape)
    )
    blocks, _ = model._split(model.exogenous_latent(z, context))
    per_unit = 0.5 * np.sum(np.asarray(blocks) ** 2, axis=(1, 2))
    np.testing.assert_allclose(metrics["label_kl"], per_unit[[0, 2]].mean(), rtol=1e-5)
    with pytest.raises(ValueError, match=r"labelled: expected shape \(4,\)"):
        model.loss(x, context, key, labelled=labelled[:2])


def test_null_interventions_reproduce_the_image_and_do_moves_it(model, units):
    mechanism = model.mechanism(ENCODING)
    parents = {name: units[name] for name in ("digit", "a", "b")}
    run = jax.jit(lambda m, x, pa, new: m.predict(m.abduct(x, pa), new))
    same = run(mechanism, units["image"], parents, parents)
    np.testing.assert_allclose(same, units["image"], atol=2e-3)
    moved = run(mechanism, units["image"], parents, {**parents, "a": parents["a"] + 0.5})
    assert np.abs(np.asarray(moved) - np.asarray(units["image"])).mean() > 0.5
    # Through the engine, with b a child of a: do(a) reaches the image through both.
    scm = SCM(
        {
            "digit": Root(dist.Categorical(probs=jnp.ones(3) / 3)),
            "a": Root(dist.Uniform(0.0, 1.0)),
            "b": _child_of_a(),
            "image": mechanism,
        }
    )
    twin = scm.counterfactual(units, {"a": jnp.full((NUM,), 0.9)})
    assert twin["image"].shape == (NUM, 16, 16, 1)
    np.testing.assert_allclose(twin["b"], units["b"] + 0.9 - units["a"], atol=1e-5)


def _child_of_a():
    return AdditiveNoise(("a",), lambda pa: pa[:, 0], dist.Normal(0.0, 1.0))


def test_a_mechanism_whose_parents_encode_differently_is_refused(model):
    swapped = ParentEncoding(
        [("digit", "categorical", 3), ("b", "continuous", (0, 1)), ("a", "continuous", (0, 1))]
    )
    with pytest.raises(ValueError, match=r"config\.context_layout"):
        model.mechanism(swapped)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"context_layout": ()}, "config.context_layout: the causal encoder reads"),
        ({"context_layout": (("digit", 3), ("a", 1), ("b", 2))}, "widths sum to 6"),
        ({"causal_variables": ("digit", "a")}, "'digit' must be a continuous parent"),
        ({"causal_variables": ("a", "height")}, "'height' must be a continuous parent"),
        ({"causal_variables": ("a", "a")}, "duplicates"),
        ({"causal_edges": (("a", "digit"),)}, "config.causal_edges"),
        ({"causal_variables": (), "causal_edges": (("a", "b"),)}, "causal_variables is empty"),
        ({"block_size": 0}, "config.block_size"),
        ({"label_weight": -1.0}, "config.label_weight"),
        ({"kl_anneal_steps": -1}, "config.kl_anneal_steps"),
        ({"causal_variables": (), "causal_edges": (), "latent_size": 0}, "config.latent_size"),
    ],
)
def test_bad_causal_configs_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        DiffusionAutoEncoder(_causal_config(**fields), rngs=nnx.Rngs(0))


def test_a_causal_encoder_needs_no_free_latent():
    model = DiffusionAutoEncoder(_causal_config(latent_size=0), rngs=nnx.Rngs(0))
    assert model.config.latent_width == 4


def test_the_task_takes_the_latent_edges_from_the_datasets_graph():
    config = load_config("experiments/diffusion_scm.py:pendulum_tiny")
    settings = complete(config, config.model)
    image = settings.image
    assert image.causal_variables == ("angle", "light", "shadow_length", "shadow_position")
    assert set(image.causal_edges) == {
        (cause, effect)
        for cause in ("angle", "light")
        for effect in ("shadow_length", "shadow_position")
    }
    assert dict(image.context_layout) == {name: 1 for name in image.causal_variables}
    wrong = dataclasses.replace(config.model.image, causal_edges=(("light", "angle"),))
    with pytest.raises(ValueError, match=r"model\.image\.causal_edges: the latent SCM takes"):
        complete(config, dataclasses.replace(config.model, image=wrong))
    unknown = dataclasses.replace(config.model.image, causal_variables=("angle", "mass"))
    with pytest.raises(ValueError, match=r"causal_variables: \['mass'\] are not attributes"):
        complete(config, dataclasses.replace(config.model, image=unknown))


def test_semi_supervised_training_needs_a_model_that_takes_unlabelled_images():
    config = load_config("experiments/morpho_hvae.py:tiny")
    with pytest.raises(ValueError, match=r"model\.labelled_fraction: semi-supervised"):
        dataclasses.replace(config.model, labelled_fraction=0.5)
    diffusion = load_config("experiments/diffusion_scm.py:morpho_tiny")
    with pytest.raises(ValueError, match=r"model\.labelled_fraction"):
        dataclasses.replace(diffusion.model, labelled_fraction=1.5)


def test_a_labelled_subset_is_a_fixed_share_drawn_by_the_seed():
    source = [{"value": k} for k in range(50)]
    subset = LabelledSubset(source, 0.2, seed=3)
    flags = np.asarray([subset[k]["labelled"] for k in range(50)])
    assert flags.sum() == 10 and len(subset) == 50
    assert [subset[k]["value"] for k in range(50)] == list(range(50))
    again = LabelledSubset(source, 0.2, seed=3).labelled
    other = LabelledSubset(source, 0.2, seed=4).labelled
    np.testing.assert_array_equal(flags, again)
    assert not np.array_equal(flags, other)
    with pytest.raises(ValueError, match="fraction"):
        LabelledSubset(source, -0.1)
