"""TFDS builders: array_record files, read back without TensorFlow, equal the generated data."""

import json
import pickle
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from causalvision.data import (
    GeneratedSource,
    MorphoDigits,
    Pendulum,
    build_dataset,
    load_source,
    quantize_image,
    stack_examples,
)


def _assert_same_example(stored, generated):
    assert stored.keys() == generated.keys()
    for k in stored:
        if isinstance(stored[k], dict):
            _assert_same_example(stored[k], generated[k])
        else:
            # digit comes back as a Python int (TFDS ClassLabel): int64 once in a batch.
            assert np.asarray(stored[k]).dtype == np.asarray(generated[k]).dtype, k
            np.testing.assert_array_equal(stored[k], generated[k], err_msg=k)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def morpho_path(data_dir):
    return build_dataset("morpho_digits", size=64, data_dir=str(data_dir), seed=5, progress=False)


def test_morpho_build_equals_generated_source(data_dir, morpho_path):
    assert morpho_path == data_dir / "morpho_digits" / "1.0.0"
    files = sorted(p.name for p in morpho_path.iterdir())
    assert "morpho_digits-train.array_record-00000-of-00001" in files
    assert json.loads((morpho_path / "metadata.json").read_text()) == {
        "size": 64,
        "test_size": 10,
        "seed": 5,
        "chunk_size": 256,
    }
    train = load_source("morpho_digits", "train", data_dir=data_dir)
    test = load_source("morpho_digits", split="test", data_dir=data_dir)
    assert (len(train), len(test)) == (64, 10)
    expected_train = GeneratedSource(MorphoDigits(), size=64, seed=5)
    expected_test = GeneratedSource(MorphoDigits(), size=10, seed=6)
    for i in range(64):  # every example, every field (order is kept: no write shuffling)
        _assert_same_example(train[i], expected_train[i])
    for i in (0, 9):
        _assert_same_example(test[i], expected_test[i])
    assert not np.array_equal(test[0]["image"], train[0]["image"])
    # Plain TFDS finds the registered builder too, and the source pickles (grain workers).
    direct = tfds.data_source("morpho_digits", split="train", data_dir=data_dir, download=False)
    _assert_same_example(direct[17], expected_train[17])
    _assert_same_example(pickle.loads(pickle.dumps(train))[3], expected_train[3])
    assert "tensorflow" not in sys.modules


def test_stored_examples_rerender_and_intervene(data_dir, morpho_path):
    del morpho_path
    morpho = MorphoDigits()
    batch = stack_examples([load_source("morpho_digits", data_dir=data_dir)[i] for i in range(8)])
    assert batch["digit"].dtype == np.int64 and batch["thickness"].dtype == np.float32
    np.testing.assert_array_equal(quantize_image(morpho, morpho.render(batch)), batch["image"])
    cf = morpho.counterfactual(batch, do={"thickness": 1.5})
    measured = np.asarray(morpho.measure(quantize_image(morpho, cf["image"]))["thickness"])
    assert np.abs(measured - 1.5).mean() < 0.15


def test_pendulum_build_equals_generated_source(data_dir):
    path = build_dataset("pendulum/32px", size=32, data_dir=data_dir, seed=2, progress=False)
    assert path == data_dir / "pendulum" / "32px" / "1.0.0"
    train = load_source("pendulum/32px", data_dir=data_dir)
    test = load_source("pendulum/32px", "test", data_dir=data_dir)
    assert (len(train), len(test)) == (32, 10)  # test: a third of train, as CausalVAE's
    expected = GeneratedSource(Pendulum(image_size=32), size=32, seed=2)
    for i in range(0, 32, 3):
        _assert_same_example(train[i], expected[i])
    assert train[0]["image"].shape == (32, 32, 3) and train[0]["image"].dtype == np.uint8
    batch = stack_examples([train[i] for i in range(4)])
    pendulum = Pendulum(image_size=32)
    np.testing.assert_array_equal(quantize_image(pendulum, pendulum.render(batch)), batch["image"])
    assert "tensorflow" not in sys.modules


def test_pendulum_other_image_size_reads_from_files(data_dir):
    path = build_dataset("pendulum/24px", size=3, data_dir=data_dir, seed=0, progress=False)
    assert path.parent.name == "24px"
    source = load_source("pendulum/24px", data_dir=data_dir)
    _assert_same_example(source[2], GeneratedSource(Pendulum(image_size=24), size=3)[2])


def test_rebuild_reuses_or_refuses(data_dir, morpho_path):
    before = (morpho_path / "dataset_info.json").stat().st_mtime_ns
    assert build_dataset("morpho_digits", size=64, data_dir=data_dir, seed=5) == morpho_path
    assert (morpho_path / "dataset_info.json").stat().st_mtime_ns == before  # not rewritten
    with pytest.raises(ValueError, match="already built"):
        build_dataset("morpho_digits", size=65, data_dir=data_dir, seed=5)
    with pytest.raises(ValueError, match="already built"):
        build_dataset("morpho_digits", size=64, data_dir=data_dir, seed=6)


def test_overwrite_rebuilds(tmp_path):
    build_dataset("pendulum/32px", size=4, data_dir=tmp_path, seed=0, progress=False)
    build_dataset("pendulum/32px", size=6, data_dir=tmp_path, seed=1, overwrite=True)
    source = load_source("pendulum/32px", data_dir=tmp_path)
    assert len(source) == 6
    _assert_same_example(source[5], GeneratedSource(Pendulum(image_size=32), 6, seed=1)[5])


def test_cli_data_build(tmp_path, capsys):
    main = pytest.importorskip("causalvision.cli").main  # the CLI lands separately

    argv = ["data", "build", "pendulum/32px", "--size", "3", "--data-dir", str(tmp_path)]
    assert main([*argv, "--seed", "4"]) == 0
    assert "pendulum/32px/1.0.0" in capsys.readouterr().out
    assert len(load_source("pendulum/32px", data_dir=tmp_path)) == 3
    assert main(["data", "build", "mnist", "--data-dir", str(tmp_path)]) == 2


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("mnist", {}, "morpho_digits"),
        ("pendulum/8px", {}, "16"),
        ("pendulum/large", {}, "pendulum"),
        ("morpho_digits", {"size": 0}, "size"),
        ("morpho_digits", {"size": 2.0}, "size"),
        ("morpho_digits", {"seed": -1}, "seed"),
    ],
)
def test_build_invalid_arguments(tmp_path, name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_dataset(name, data_dir=tmp_path, progress=False, **kwargs)
    assert not any(tmp_path.iterdir())  # nothing written


def test_load_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="causalvision data build morpho_digits"):
        load_source("morpho_digits", data_dir=tmp_path)
    with pytest.raises(ValueError, match="name"):
        load_source("celeb_a", data_dir=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_source("morpho_digits", split=0, data_dir=tmp_path)
