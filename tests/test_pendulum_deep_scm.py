"""The pendulum gets a deep SCM from its dataset's specs and an experiment file alone."""

import json
import pathlib

import jax
import numpy as np
import pytest

from causalvision.cli import main as cli_main
from causalvision.data import GeneratedSource, Pendulum, quantize_image, stack_examples
from causalvision.metrics import CounterfactualSubject, run_evaluators

EXPERIMENT = pathlib.Path(__file__).parent.parent / "experiments" / "pendulum_hvae.py"
ATTRIBUTES = ("angle", "light", "shadow_length", "shadow_position")


def test_train_then_evaluate_against_the_exact_counterfactuals(tmp_path, capsys):
    run = tmp_path / "run"
    command = ["train", f"{EXPERIMENT}:tiny", "--workdir", str(run)]
    assert cli_main([*command, "--set", "trainer.eval_every=None"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["image"]["image_shape"] == [16, 16, 3]  # from the dataset
    assert config["model"]["image"]["context_dim"] == 4  # four continuous parents

    assert cli_main(["evaluate", "--workdir", str(run), "--n", "8", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["composition_l1_1"] < 0.01  # pixel noise is abducted exactly
    for node in (*ATTRIBUTES, "random"):
        error = metrics[f"gt_error/do({node})/l1"]
        assert 0 < error < 255 and f"gt_error/do({node})/l1" in printed
    # No exact measurement of pendulum images and no oracle run: nothing to read back.
    assert not any(key.startswith("effectiveness/") for key in metrics)
    assert sorted(p.name for p in tmp_path.glob("counterfactuals_*.png"))[:2] == [
        "counterfactuals_angle-29.png",
        "counterfactuals_angle32.png",
    ]


def test_the_exact_generator_scores_zero_on_every_pendulum_intervention():
    pendulum = Pendulum(image_size=32)
    source = GeneratedSource(pendulum, size=8, seed=5, chunk_size=8)
    examples = stack_examples([source[i] for i in range(8)])

    def exact(images, parents, do):
        del images
        truth = pendulum.counterfactual(dict(parents), dict(do))
        return np.asarray(quantize_image(pendulum, truth["image"]), np.float32)

    subject = CounterfactualSubject(exact, examples, key=jax.random.key(0), dataset=pendulum)
    evals = {"ground_truth": {"type": "ground_truth"}, "reversibility": {"type": "reversibility"}}
    values = {name: value for _, name, value in run_evaluators(evals, subject)}
    for node in (*ATTRIBUTES, "random"):
        assert values[f"gt_error/do({node})/l1"] == 0.0
        assert values[f"reversibility/do({node})/l1_5"] == 0.0
    # do(angle) moves both shadows (its children), as the geometry dictates.
    moved = subject.targets("angle")
    assert not np.allclose(moved["shadow_length"], examples["shadow_length"])
    with pytest.raises(ValueError, match=r"evals\['bad'\].type: unknown name 'nothing'"):
        list(run_evaluators({"bad": {"type": "nothing"}}, subject))
