"""Conformance of every registered image model to the `ImageModel` protocol.

Parametrised over `causalvision.nn.IMAGE_MODELS`: a new image model gets these tests by
adding its catalogue line (and a `Config.tiny`). One tiny model per entry is built once per
session and shared by the tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from causalvision.data import MorphoDigits
from causalvision.lookup import resolve
from causalvision.nn import IMAGE_MODELS, DeepSCM, ImageModel, ParentEncoding, from_pixels
from causalvision.scm import SCM, Mechanism

SPECS = MorphoDigits.attribute_specs  # a categorical and two continuous parents
ENCODING = ParentEncoding.from_attributes(SPECS)
IMAGE_SHAPE = (32, 32, 3)  # colour, to catch channel mix-ups in one-channel defaults
NUM = 4


@pytest.fixture(scope="session", params=sorted(IMAGE_MODELS))
def image_model(request):
    model_type = resolve(request.param, IMAGE_MODELS, "image_model")
    config = model_type.Config.tiny(IMAGE_SHAPE, ENCODING.size)
    return model_type(config, rngs=nnx.Rngs(0))


@pytest.fixture(scope="session")
def units():
    """Parents `(N,)` drawn from the Morpho SCM and random images on the uint8 grid."""
    values = MorphoDigits().scm.sample(jax.random.key(1), NUM)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (NUM, *IMAGE_SHAPE)), jnp.float32)
    return {**{n: values[n] for n in MorphoDigits.attributes}, "image": images}


def _parents(units):
    return {n: units[n] for n in ENCODING.names}


def test_it_is_an_image_model_of_the_configured_shape(image_model):
    assert isinstance(image_model, ImageModel)
    assert tuple(image_model.image_shape) == IMAGE_SHAPE
    assert image_model.context_dim == ENCODING.size == DeepSCM.context_dim(SPECS)
    assert isinstance(image_model.conditional_prior, bool)


def test_loss_is_a_finite_scalar_with_finite_gradients(image_model, units, key):
    x = from_pixels(units["image"])
    context = ENCODING(_parents(units))
    graphdef, params, rest = nnx.split(image_model, nnx.Param, ...)

    @jax.jit
    def value_and_grad(params):
        def loss(params):
            return nnx.merge(graphdef, params, rest).loss(x, context, key)

        return jax.value_and_grad(loss, has_aux=True)(params)

    (value, metrics), grads = value_and_grad(params)
    assert value.shape == () and np.isfinite(float(value))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


def test_mechanism_samples_images_in_pixel_range(image_model, units, key):
    mechanism = image_model.mechanism(ENCODING)
    assert isinstance(mechanism, Mechanism)
    assert mechanism.parents == ENCODING.names
    sample = jax.jit(lambda mechanism, key, parents: mechanism.sample(key, parents, NUM))
    images = np.asarray(sample(mechanism, key, _parents(units)))
    assert images.shape == (NUM, *IMAGE_SHAPE)
    assert np.all(np.isfinite(images)) and images.min() >= 0 and images.max() <= 255


def test_intervening_on_a_parent_with_its_own_value_reproduces_the_image(image_model, units):
    """do(parent = factual) through the SCM engine, with abducted noise: the input back."""
    attributes = MorphoDigits().scm
    scm = SCM({**attributes.mechanisms, "image": image_model.mechanism(ENCODING)})
    for node in ENCODING.names:
        null = scm.counterfactual(units, {node: units[node]})
        np.testing.assert_allclose(np.asarray(null["image"]), np.asarray(units["image"]), atol=2e-3)


def test_abduct_and_predict_jit_whole_or_apart_alike(image_model, units):
    mechanism = image_model.mechanism(ENCODING)
    parents = _parents(units)
    moved = {**parents, "thickness": parents["thickness"] + 1.0}

    def counterfactual(mechanism, images, parents, moved):
        return mechanism.predict(mechanism.abduct(images, parents), moved)

    whole = jax.jit(counterfactual)(mechanism, units["image"], parents, moved)
    # The same through the two steps jitted apart (the noise is a pytree crossing the boundary).
    abduct = jax.jit(lambda mechanism, images, parents: mechanism.abduct(images, parents))
    predict = jax.jit(lambda mechanism, noise, parents: mechanism.predict(noise, parents))
    steps = predict(mechanism, abduct(mechanism, units["image"], parents), moved)
    np.testing.assert_allclose(np.asarray(whole), np.asarray(steps), atol=1e-3)
    assert not np.allclose(np.asarray(whole), np.asarray(units["image"]), atol=1e-3)


@pytest.mark.parametrize("width", [ENCODING.size - 1, ENCODING.size + 1])
def test_a_context_of_the_wrong_width_is_refused(image_model, units, key, width):
    x = from_pixels(units["image"])
    context = jnp.zeros((NUM, width), jnp.float32)
    with pytest.raises(ValueError, match=rf"context: expected .* \(4, {ENCODING.size}\)"):
        image_model.loss(x, context, key)
    wrong = ParentEncoding([("a", "continuous", (0.0, 1.0))] * width)
    with pytest.raises(ValueError, match=f"encoding: the parents encode to {width} numbers"):
        image_model.mechanism(wrong)


def test_a_prior_context_is_refused_unless_the_prior_reads_the_parents(image_model, units, key):
    x = from_pixels(units["image"])
    context = ENCODING(_parents(units))
    if image_model.conditional_prior:
        graphdef, state = nnx.split(image_model)
        loss = jax.jit(
            lambda state, prior: nnx.merge(graphdef, state).loss(
                x, context, key, prior_context=prior
            )
        )
        dropped, _ = loss(state, jnp.zeros_like(context))
        assert np.isfinite(float(dropped))
    else:
        with pytest.raises(ValueError, match="prior_context"):
            image_model.loss(x, context, key, prior_context=jnp.zeros_like(context))
