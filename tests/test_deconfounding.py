"""Worst-group metrics, the adjusted classifier and the `deconfounding` task, end to end."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from causalvision.cli import main as cli_main
from causalvision.metrics import group_accuracy, group_index
from causalvision.nn import AdjustedClassifier
from causalvision.train import load_config, load_run, train_and_evaluate
from causalvision.train.tasks.deconfounding import (
    _conditional_statistics,
    _group_weights,
    build,
)

EXPERIMENT = pathlib.Path(__file__).parents[1] / "experiments" / "deconfounding.py"


# ------------------------------------------------------------------------------------------
# Metrics


def test_group_accuracy_matches_a_count_by_hand():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 500)
    groups = group_index(labels, rng.integers(0, 4, 500), 4)
    predictions = np.where(rng.random(500) < 0.7, labels, (labels + 1) % 3)
    result = group_accuracy(predictions, labels, groups, 16)
    correct = predictions == labels
    expected = [correct[np.asarray(groups) == g].mean() for g in range(12)]
    np.testing.assert_allclose(result["group_accuracy"][:12], expected, rtol=1e-6)
    assert np.isnan(result["group_accuracy"][12:]).all()  # labels < 3: groups 12-15 empty
    assert result["group_counts"][12:].sum() == 0
    assert float(result["worst_group_accuracy"]) == pytest.approx(min(expected), rel=1e-6)
    assert float(result["accuracy"]) == pytest.approx(correct.mean(), rel=1e-6)


def test_group_accuracy_takes_logits_and_runs_under_jit():
    logits = jnp.asarray([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0], [0.0, 1.0]])
    labels, groups = jnp.asarray([0, 1, 1, 1]), jnp.asarray([0, 1, 1, 2])
    eager = group_accuracy(logits, labels, groups, 3)
    jitted = jax.jit(group_accuracy, static_argnums=3)(logits, labels, groups, 3)
    np.testing.assert_allclose(eager["group_accuracy"], [1.0, 0.5, 1.0])
    assert float(eager["worst_group_accuracy"]) == 0.5
    for name in eager:
        np.testing.assert_allclose(eager[name], jitted[name])


@pytest.mark.parametrize(
    "arguments, match",
    [
        (([0, 1], [0, 1], [0, 3], 3), "groups: expected values in"),
        (([0, 1], [0.0, 1.0], [0, 1], 3), "labels: expected integer"),
        (([0, 1, 1], [0, 1], [0, 1], 3), "expected one shape"),
        (([], [], [], 3), "at least one"),
        (([0], [0], [0], 0), "num_groups"),
    ],
)
def test_group_accuracy_refuses_bad_input(arguments, match):
    with pytest.raises(ValueError, match=match):
        group_accuracy(*(np.asarray(a) if isinstance(a, list) else a for a in arguments))


# ------------------------------------------------------------------------------------------
# Statistics the task counts on the training set


def test_conditional_statistics_are_smoothed_counts():
    confounder = np.array([0, 0, 0, 1, 1])
    labels = np.array([0, 0, 1, 1, 1])
    table, prior = _conditional_statistics(confounder, labels, 2, 2)
    # c = 0: counts (2, 1) + 1 -> (3, 2) / 5; c = 1: (0, 2) + 1 -> (1, 3) / 4.
    np.testing.assert_allclose(np.exp(table), [[0.6, 0.4], [0.25, 0.75]])
    np.testing.assert_allclose(prior, [0.6, 0.4])


def test_group_weights_give_every_present_group_the_same_total():
    groups = np.array([0, 0, 0, 0, 1, 3, 3])
    weights = _group_weights(groups, 4)
    totals = np.bincount(groups, weights=weights[groups], minlength=4)
    np.testing.assert_allclose(totals[[0, 1, 3]], 7 / 3)
    assert weights[2] == 0.0
    assert weights[groups].sum() == pytest.approx(len(groups))


# ------------------------------------------------------------------------------------------
# The classifier


def test_conditional_prediction_is_the_backdoor_formula():
    log_table = np.log([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    prior = np.array([0.5, 0.3, 0.2])
    model = AdjustedClassifier(
        (8, 8, 1),
        2,
        widths=(4,),
        hidden=4,
        adjustment="conditional",
        log_table=log_table,
        prior=prior,
        rngs=nnx.Rngs(0),
    )
    images = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1))
    g = np.asarray(model.head(model.features(images)), np.float64)
    expected = sum(
        p * np.exp(g + t - np.log(np.exp(g + t).sum(-1, keepdims=True)))
        for p, t in zip(prior, log_table, strict=True)
    )
    np.testing.assert_allclose(np.exp(model(images)), expected, rtol=1e-5)
    # Trained at each image's own confounder: the conditional logits g(x) + log P(y | c).
    conditional = model.conditional_logits(images, jnp.asarray([0, 2, 1]))
    np.testing.assert_allclose(conditional, g + log_table[[0, 2, 1]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"adjustment": "sideways"}, "adjustment: expected one of"),
        ({"adjustment": "backdoor"}, "dictionary: the 'backdoor' adjustment needs one"),
        ({"adjustment": "conditional"}, "log_table: the 'conditional' adjustment needs"),
        ({"adjustment": "conditional", "log_table": np.zeros((2, 3))}, r"log_table: .*\(C, 2\)"),
        (
            {"adjustment": "conditional", "log_table": np.zeros((2, 2)), "prior": [0.7, 0.7]},
            "prior: expected",
        ),
        (
            {"adjustment": "conditional", "log_table": np.zeros((2, 2)), "prior": [-0.5, 1.5]},
            "prior",
        ),
    ],
)
def test_classifier_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdjustedClassifier((8, 8, 1), 2, widths=(4,), hidden=4, rngs=nnx.Rngs(0), **kwargs)


# ------------------------------------------------------------------------------------------
# The task, through the one trainer


def tiny(preset: str, *overrides: str):
    return load_config(f"{EXPERIMENT}:{preset},tiny", list(overrides))


@pytest.fixture(scope="module")
def erm_run(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("erm")
    train_and_evaluate(tiny("erm"), workdir)
    return workdir


@pytest.mark.parametrize("preset", ["reweight", "frontdoor", "observed", "backdoor", "inferred"])
def test_each_method_trains_and_restores_exactly(preset, erm_run, tmp_path):
    config = tiny(preset, f"model.features_from={str(erm_run)!r}")
    result = train_and_evaluate(config, tmp_path)
    assert result.step == 4
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert any('"accuracy"' in line for line in lines)
    _, restored = load_run(tmp_path)
    images = jax.random.uniform(jax.random.key(0), (5, 16, 16, 3))
    np.testing.assert_array_equal(np.asarray(restored.model(images)), result.model(images))
    if preset == "backdoor":  # the dictionary is the frozen k-means of the ERM features
        trained = result.model.back_door
        assert np.abs(np.asarray(trained.dictionary[...])).sum() > 0
        np.testing.assert_array_equal(
            restored.model.back_door.dictionary[...], trained.dictionary[...]
        )


def test_observed_tables_are_counted_from_the_training_data():
    config = tiny("observed")
    task = build(config)
    source = task.train_source
    rows = [source[i] for i in range(len(source))]
    confounder = np.array([r["confounder"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    table, prior = _conditional_statistics(confounder, labels, 4, 4)
    model = task.init_model(nnx.Rngs(0))
    np.testing.assert_allclose(model.log_table[...], table, rtol=1e-6)
    np.testing.assert_allclose(model.prior[...], prior, rtol=1e-6)
    # 95% agreement: the table's diagonal dominates.
    assert (np.argmax(table, 1) == np.arange(4)).all()


def test_methods_that_read_features_need_a_run(tmp_path):
    with pytest.raises(ValueError, match=r"model.features_from: the 'backdoor' method"):
        build(tiny("backdoor"))
    with pytest.raises(ValueError, match=r"model.method: expected one of"):
        tiny("erm", "model.method='magic'")
    with pytest.raises(ValueError, match=r"model.label: expected a categorical attribute"):
        build(tiny("erm", "model.label='colour'"))


def test_the_command_line_names_the_missing_run(tmp_path, capsys):
    arguments = ["train", f"{EXPERIMENT}:backdoor,tiny", "--workdir", str(tmp_path / "run")]
    assert cli_main(arguments) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("causalvision: error: model.features_from"), err
