"""Reliability rules that cut across packages: one test per class of failure, not per example.

- Every dataset refuses attribute values outside its specs' supports wherever they enter
  (rendering, interventions, the CLI's --do), instead of drawing something else.
- Measurements of an image with nothing to measure are NaN, not a number.
- An intervention inside a node's support never fails on another node.
- A user-facing command prints one line and exits 2 for every expected failure.
- `import causalvision` and `causalvision --help` load no JAX.
"""

import errno
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from causalvision.cli import main as cli_main
from causalvision.data import DATASETS, ArraySource, MorphoDigits, get_dataset
from causalvision.train import Config, DataConfig, Task, TaskSpec, TrainerConfig, config_to_dict

SMALL = {"pendulum": {"image_size": 16}}
V1_RUN = pathlib.Path(__file__).parent / "data" / "v1_deep_scm"


@pytest.fixture(scope="module", params=sorted(DATASETS))
def dataset_and_batch(request):
    dataset = get_dataset(request.param, **SMALL.get(request.param, {}))
    return dataset, dataset.sample(jax.random.key(0), 3)


def _outside(spec) -> list[float]:
    """Values just outside an attribute spec's support (and the non-finite ones)."""
    bad = [float("nan"), float("inf"), -float("inf")]
    if spec.categorical:
        return [*bad, -1.0, float(spec.num_classes), 1.5]
    if spec.support is not None and spec.support[0] == "positive":
        return [*bad, spec.support[1], spec.support[1] - 5.0]
    if spec.support is not None:
        return [*bad, spec.support[1], spec.support[2] + 1.0]
    return bad


def test_every_dataset_refuses_rendering_attributes_outside_their_support(dataset_and_batch):
    dataset, batch = dataset_and_batch
    for spec in dataset.attribute_specs:
        for value in _outside(spec):
            bad = {**batch, spec.name: jnp.full((3,), value, jnp.float32)}
            with pytest.raises(ValueError, match=rf"\['{spec.name}'\].*outside the support"):
                dataset.render(bad)


def test_every_dataset_refuses_interventions_outside_their_support(dataset_and_batch):
    """The exact counterfactual refuses a do() value its renderer would misdraw (the pendulum
    drew shadow length -5 as +5); the engine or the dataset names the intervened node."""
    dataset, batch = dataset_and_batch
    for spec in dataset.attribute_specs:
        for value in _outside(spec):
            with pytest.raises(ValueError, match=rf"do\['{spec.name}'\]"):
                dataset.counterfactual(batch, do={spec.name: value})


def test_every_dataset_renders_interventions_inside_its_support_exactly(dataset_and_batch):
    """Values at the edge of the support (but inside it) are rendered as asked."""
    dataset, batch = dataset_and_batch
    for spec in dataset.attribute_specs:
        if spec.categorical:
            value = float(spec.num_classes - 1)
        elif spec.support is not None and spec.support[0] == "positive":
            value = spec.support[1] + 0.25
        elif spec.support is not None:
            value = spec.support[2] - 0.25
        else:
            continue
        if spec.name in dataset.scm.mechanisms and not spec.parents:
            ok = dataset.scm.mechanisms[spec.name].in_support(np.asarray([value]))
            if ok is not None and not ok.all():  # a root's prior is narrower than the spec
                continue
        cf = dataset.counterfactual(batch, do={spec.name: value})
        np.testing.assert_allclose(np.asarray(cf[spec.name], np.float64), value, rtol=1e-6)
        assert np.isfinite(np.asarray(cf["image"])).all()


def test_an_intervention_inside_its_support_never_fails_on_another_node():
    """do(thickness=12) saturated σ to intensity = 255.0 in float32, outside intensity's open
    support, so rendering failed on intensity. Now intensity stays inside and abducts."""
    morpho = MorphoDigits()
    batch = morpho.sample(jax.random.key(1), 4)
    for thickness in (12.0, 40.0, 0.5 + 1e-3):
        cf = morpho.counterfactual(batch, do={"thickness": thickness})
        intensity = np.asarray(cf["intensity"])
        assert ((intensity > 64.0) & (intensity < 255.0)).all()
        noise = morpho.scm.mechanisms["intensity"].abduct(
            cf["intensity"], {"thickness": cf["thickness"]}
        )
        assert np.isfinite(np.asarray(noise)).all()


def test_measuring_an_image_without_a_stroke_gives_nan():
    blank = np.zeros((3, 32, 32, 1), np.float32)
    blank[1] = 200.0  # uniformly bright: no stroke either
    blank[2, 10, 10] = 0.5  # under one grey level of contrast
    measured = MorphoDigits.measure(blank)
    assert np.isnan(np.asarray(measured["thickness"])).all()
    assert np.isnan(np.asarray(measured["intensity"])).all()
    digits = MorphoDigits().sample(jax.random.key(2), 2)
    measured = MorphoDigits.measure(digits["image"])
    np.testing.assert_allclose(measured["intensity"], digits["intensity"], rtol=1e-4)


def test_mnist_without_prepared_data_says_how_to_prepare_it(tmp_path):
    from causalvision.data import mnist_source

    with pytest.raises(FileNotFoundError, match="tfds build mnist --file_format=array_record"):
        mnist_source(data_dir=tmp_path)
    assert "tensorflow" not in sys.modules


# -------------------------------------------------------------------------------------------
# Commands: one line per expected failure.


class _Scalar(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.w = nnx.Param(jnp.ones((), jnp.float32))


def _diverging_spec() -> TaskSpec:
    """A task whose loss is infinite from the first step."""

    def build(config):
        def loss(model, batch, key):
            del key
            return jnp.float32(jnp.inf) * model.w[...] + 0.0 * jnp.mean(batch["x"]), {}

        source = ArraySource({"x": np.zeros((config.data.size, 1), np.float32)})
        return Task(init_model=_Scalar, loss=loss, train_source=source)

    return TaskSpec(settings=dict, build=build, build_model=lambda config: _Scalar)


DIVERGING = _diverging_spec()


def _config_file(tmp_path: pathlib.Path, task: str, data: DataConfig) -> str:
    trainer = TrainerConfig(
        num_steps=4, batch_size=4, log_every=2, checkpoint_every=2, progress=False
    )
    config = Config(task=task, data=data, trainer=trainer, model={})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_to_dict(config)))
    return str(path)


def _cases(tmp_path: pathlib.Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, a fragment of the one line expected)."""
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def get_config(preset):\n    return (\n")
    not_object = tmp_path / "list.json"
    not_object.write_text("[1, 2]")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    diverging = _config_file(tmp_path, "test_reliability:DIVERGING", DataConfig(size=8))
    experiment = "experiments/morpho_oracle.py:tiny"
    return {
        "config with a syntax error": (
            ["train", str(syntax), "--workdir", str(tmp_path / "w1")],
            "line 2: '(' was never closed",
        ),
        "config.json that is not an object": (
            ["train", str(not_object), "--workdir", str(tmp_path / "w2")],
            "expected a JSON object",
        ),
        "unknown dataset": (
            ["train", experiment, "--workdir", str(tmp_path / "w3"), "--set", "data.name=nope"],
            "data.name: unknown name 'nope'",
        ),
        "workdir that is a file": (
            ["train", experiment, "--workdir", str(a_file)],
            "workdir: '" + str(a_file) + "' is not a directory",
        ),
        "a run that diverges": (
            ["train", diverging, "--workdir", str(tmp_path / "w4")],
            "non-finite at step 0",
        ),
        "a class that is not a whole number": (
            ["counterfactual", "--workdir", str(V1_RUN), "--do", "digit=3.7"],
            "--do['digit']: 1 value(s) outside the support",
        ),
        "data build into a file": (
            ["data", "build", "morpho_digits", "--size", "4", "--data-dir", str(a_file)],
            "data_dir: '" + str(a_file) + "' is not a directory",
        ),
    }


CASES = [
    "config with a syntax error",
    "config.json that is not an object",
    "unknown dataset",
    "workdir that is a file",
    "a run that diverges",
    "a class that is not a whole number",
    "data build into a file",
]


@pytest.mark.parametrize("case", CASES)
def test_commands_print_one_line_for_every_expected_failure(case, tmp_path, capsys):
    arguments, fragment = _cases(tmp_path)[case]
    assert cli_main(arguments) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("causalvision: error: "), err
    assert fragment in err[-1], err[-1]
    assert not any("Traceback" in line for line in err)
    if case == "unknown dataset":  # refused before the run wrote anything
        assert not (tmp_path / "w3" / "config.json").exists()


def test_a_full_disk_is_one_line_too(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.array_record"))

    monkeypatch.setattr("causalvision.data.build_dataset", full)
    arguments = ["data", "build", "morpho_digits", "--size", "4", "--data-dir", str(tmp_path)]
    assert cli_main(arguments) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"causalvision: error: {tmp_path / 'x.array_record'}: No space left on device"]


def test_bugs_still_show_their_traceback(monkeypatch):
    """Only expected failures are turned into one line: a bug of ours must stay visible."""
    import causalvision.data

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(causalvision.data, "build_dataset", bug)
    with pytest.raises(ZeroDivisionError):
        cli_main(["data", "build", "morpho_digits", "--size", "4"])


def test_help_and_import_load_no_jax():
    """`causalvision --help` answers without importing JAX (a second of start-up)."""
    code = (
        "import sys, causalvision, causalvision.cli\n"
        "try:\n    causalvision.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'jax' not in sys.modules, 'jax imported'\n"
        "assert causalvision.SCM.__name__ == 'SCM'  # and names load on first use\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage: causalvision" in done.stdout
