"""Every built-in dataset keeps the `Dataset` protocol: its specs describe its own generator."""

import jax
import numpy as np
import pytest

from causalvision.data import DATASETS, Dataset, GeneratedSource, get_dataset, quantize_image
from causalvision.lookup import resolve

# Small images keep the renders cheap; every option a dataset takes is listed here.
OPTIONS = {
    "confounded_shapes": {"image_size": 16},
    "pendulum": {"image_size": 32},
    "sprite_scenes": {"image_size": 32, "max_objects": 3},
    "captioned_scenes": {"image_size": 32, "max_objects": 3},
}


@pytest.fixture(scope="module", params=sorted(DATASETS))
def dataset(request) -> Dataset:
    return get_dataset(request.param, **OPTIONS.get(request.param, {}))


def test_a_dataset_is_found_by_name_and_by_module_path(dataset):
    assert isinstance(dataset, Dataset)
    assert resolve(dataset.name, DATASETS, "data.name") is type(dataset)
    path = f"{type(dataset).__module__}:{type(dataset).__qualname__}"
    assert type(get_dataset(path, **OPTIONS.get(dataset.name, {}))) is type(dataset)


def test_specs_name_the_scm_nodes_parents_first(dataset):
    names = [spec.name for spec in dataset.attribute_specs]
    assert tuple(names) == dataset.attributes
    assert set(names) == set(dataset.scm.nodes)
    for k, spec in enumerate(dataset.attribute_specs):
        assert set(spec.parents) == set(dataset.scm.mechanisms[spec.name].parents)
        assert set(spec.parents) <= set(names[:k])


def test_standardisation_is_the_generators_marginal_mean_and_spread(dataset):
    values = dataset.scm.sample(jax.random.key(0), 200_000)
    for spec in dataset.attribute_specs:
        if spec.categorical:
            assert np.asarray(values[spec.name]).max() < spec.num_classes
            continue
        offset, scale = spec.standardise
        x = np.asarray(values[spec.name], np.float64)
        assert abs(x.mean() - offset) < 0.01 * scale, (spec.name, x.mean(), offset)
        assert abs(x.std() / scale - 1) < 0.01, (spec.name, x.std(), scale)


def test_stored_examples_follow_the_specs_and_rerender_exactly(dataset):
    source = GeneratedSource(dataset, size=4, chunk_size=4)
    example = source[0]
    assert example["image"].shape == tuple(dataset.image_shape)
    assert example["image"].dtype == np.uint8
    for spec in dataset.attribute_specs:
        assert example[spec.name].dtype == (np.int64 if spec.categorical else np.float32)
    assert set(example) == {"image", *dataset.attributes, *dataset.exogenous}
    batch = jax.tree.map(lambda *rows: np.stack(rows), *source.__getitems__(range(4)))
    # Null intervention on every root: the exact counterfactual is the stored image.
    roots = [s.name for s in dataset.attribute_specs if not s.parents]
    truth = dataset.counterfactual(batch, {n: batch[n] for n in roots})
    np.testing.assert_array_equal(quantize_image(dataset, truth["image"]), batch["image"])


def test_unknown_names_and_options_are_refused():
    with pytest.raises(ValueError, match=r"data.name: unknown name .mnist."):
        get_dataset("mnist")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        get_dataset("no_such_module:Data")
    with pytest.raises(ValueError, match="has no attribute 'Nothing'"):
        get_dataset("causalvision.data.morpho:Nothing")
    with pytest.raises(ValueError, match=r"data.options: .morpho_digits. does not take"):
        get_dataset("morpho_digits", image_size=32)
