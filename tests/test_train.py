"""The generic trainer in-process: updates, EMA, schedules, checkpoints, errors, configs, CLI."""

import dataclasses
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from causalvision.cli import main as cli_main
from causalvision.data import ArraySource
from causalvision.train import (
    Checkpointer,
    NonFiniteLossError,
    Task,
    TrainerConfig,
    apply_overrides,
    config_to_dict,
    learning_rate_schedule,
    load_config,
    read_metrics,
    restore,
    train,
    train_and_evaluate,
)
from causalvision.train.optim import global_norm

EXPERIMENT = pathlib.Path(__file__).parent.parent / "experiments" / "morpho_oracle.py"


class Scalar(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        del rngs
        self.w = nnx.Param(jnp.zeros((2,), jnp.float32))


TARGET = np.array([3.0, -4.0], np.float32)


def _quadratic_task(x: np.ndarray | None = None) -> Task:
    """loss = ½‖w - target‖² (+ 0·mean(x), so NaN in the data makes it NaN)."""
    x = np.zeros((64, 1), np.float32) if x is None else x

    def loss(model, batch, key):
        del key
        w = model.w[...]
        value = 0.5 * jnp.sum((w - jnp.asarray(TARGET)) ** 2) + 0.0 * jnp.mean(batch["x"])
        return value, {"w0": w[0]}

    return Task(init_model=Scalar, loss=loss, train_source=ArraySource({"x": x}))


def _config(**overrides) -> TrainerConfig:
    settings = dict(
        num_steps=12,
        batch_size=8,
        optimizer="sgd",
        learning_rate=0.05,
        grad_clip_norm=2.0,
        ema_decay=0.3,  # capped from step 3 on; warm-up before
        log_every=3,
        checkpoint_every=4,
        progress=False,
    )
    settings.update(overrides)
    return TrainerConfig(**settings)


def _numpy_trajectory(config: TrainerConfig) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """SGD with momentum 0.9 after global-norm clipping, and the EMA, written out by hand.

    Returns the final parameters, their EMA and the gradient norm of every step.
    """
    w = np.zeros(2, np.float64)
    ema = w.copy()
    momentum = np.zeros(2)
    schedule = learning_rate_schedule(config)
    norms = []
    for step in range(config.num_steps):
        grad = w - TARGET
        norm = np.linalg.norm(grad)
        norms.append(float(norm))
        grad = grad * min(1.0, config.grad_clip_norm / norm)
        momentum = 0.9 * momentum + grad
        w = w - float(schedule(step)) * momentum
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        ema = decay * ema + (1 - decay) * w
    return w, ema, norms


def test_updates_clipping_schedule_and_ema_match_a_hand_written_optimiser(tmp_path):
    config = _config(schedule="warmup_cosine", warmup_steps=3)
    result = train(_quadratic_task(), config, tmp_path)
    w, ema, norms = _numpy_trajectory(config)
    np.testing.assert_allclose(np.asarray(result.model.w[...]), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(result.ema_model.w[...]), ema, rtol=1e-5, atol=1e-6)
    # Clipping mattered: the first gradient has norm 5 > 2.
    unclipped, _, _ = _numpy_trajectory(
        _config(schedule="warmup_cosine", warmup_steps=3, grad_clip_norm=1e9)
    )
    assert np.abs(unclipped - w).max() > 1e-2

    train_lines = read_metrics(tmp_path / "metrics.jsonl")["train"]
    assert [r["step"] for r in train_lines] == [3, 6, 9, 12]
    # Logged metrics are means over the logging period; norms are before clipping (5 at first).
    assert norms[0] == pytest.approx(5.0)
    logged = [r["grad_norm"] for r in train_lines]
    assert logged == pytest.approx([np.mean(norms[k : k + 3]) for k in (0, 3, 6, 9)], rel=1e-5)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Checkpointer(tmp_path / "checkpoints").steps() == [8, 12]  # max_to_keep=2


def test_global_norm_is_the_norm_of_all_leaves_together():
    tree = {
        "a": jnp.asarray([[3.0, 0.0], [0.0, 0.0]], jnp.float32),
        "b": [jnp.asarray([4.0], jnp.bfloat16), jnp.zeros((0,), jnp.float32)],
        "c": jnp.asarray(12.0, jnp.float32),
    }
    assert float(global_norm(tree)) == pytest.approx(13.0)  # sqrt(9 + 16 + 144)
    assert global_norm(tree).dtype == jnp.float32
    assert float(global_norm({})) == 0.0
    rng = np.random.default_rng(0)
    leaves = [rng.normal(size=s).astype(np.float32) for s in [(3, 4), (5,), (2, 2, 2)]]
    brute = np.sqrt(sum(float((leaf.astype(np.float64) ** 2).sum()) for leaf in leaves))
    assert float(global_norm([jnp.asarray(x) for x in leaves])) == pytest.approx(brute, rel=1e-6)


def test_learning_rate_schedules():
    warm = learning_rate_schedule(_config(schedule="warmup_cosine", warmup_steps=4, num_steps=20))
    assert float(warm(0)) == 0.0
    assert float(warm(4)) == pytest.approx(0.05)
    assert float(warm(20)) == pytest.approx(0.0, abs=1e-7)
    cosine = learning_rate_schedule(_config(schedule="cosine", num_steps=10))
    assert float(cosine(5)) == pytest.approx(0.025)
    constant = learning_rate_schedule(_config(schedule="constant", warmup_steps=2))
    assert [float(constant(s)) for s in (0, 1, 2, 7)] == pytest.approx([0.0, 0.025, 0.05, 0.05])


def test_resume_continues_from_the_checkpoint(tmp_path):
    straight = train(_quadratic_task(), _config(), tmp_path / "straight")
    train(_quadratic_task(), _config(num_steps=8), tmp_path / "split")
    # A longer run in the same workdir picks up at step 8 (same schedule: constant).
    resumed = train(_quadratic_task(), _config(), tmp_path / "split")
    assert resumed.step == 12
    np.testing.assert_array_equal(
        np.asarray(resumed.model.w[...]), np.asarray(straight.model.w[...])
    )
    restored = restore(_quadratic_task(), _config(), tmp_path / "split")
    np.testing.assert_array_equal(
        np.asarray(restored.model.w[...]), np.asarray(straight.model.w[...])
    )


def test_non_finite_loss_stops_without_overwriting_a_good_checkpoint(tmp_path):
    x = np.zeros((128, 1), np.float32)
    x[8 * 9] = np.nan  # unshuffled: the 10th batch (step index 9) holds the NaN
    task = _quadratic_task(x)
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step 9.*step 8"):
        train(task, _config(log_every=1), tmp_path, shuffle=False)
    assert Checkpointer(tmp_path / "checkpoints").steps() == [4, 8]
    good = restore(task, _config(), tmp_path)
    assert good.step == 8 and np.isfinite(np.asarray(good.model.w[...])).all()


def test_corrupted_and_partial_checkpoints_are_skipped_with_a_warning(tmp_path):
    train(_quadratic_task(), _config(num_steps=8), tmp_path)
    checkpoints = tmp_path / "checkpoints"
    reference = restore(_quadratic_task(), _config(), tmp_path, step=4)
    # A half-written save (what a kill during a save leaves) and a damaged finished one.
    shutil.copytree(checkpoints / "4", checkpoints / "12.orbax-checkpoint-tmp")
    for path in (checkpoints / "8" / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    assert Checkpointer(checkpoints).steps() == [4, 8]
    with pytest.warns(UserWarning, match=r"skipping unreadable checkpoint .*8"):
        restored = restore(_quadratic_task(), _config(), tmp_path)
    assert restored.step == 4
    np.testing.assert_array_equal(
        np.asarray(restored.model.w[...]), np.asarray(reference.model.w[...])
    )
    with pytest.raises(ValueError, match=r"step: checkpoint 8 .* unreadable"):
        restore(_quadratic_task(), _config(), tmp_path, step=8)


def test_restore_reads_the_model_whatever_the_optimiser_state(tmp_path):
    trained = train(_quadratic_task(), _config(num_steps=8, optimizer="adam"), tmp_path)
    # Another optimiser (another state layout) reads the same model and EMA.
    loaded = restore(_quadratic_task(), _config(optimizer="sgd", grad_clip_norm=None), tmp_path)
    assert loaded.step == 8
    np.testing.assert_array_equal(np.asarray(loaded.model.w[...]), np.asarray(trained.model.w[...]))
    np.testing.assert_array_equal(
        np.asarray(loaded.ema_model.w[...]), np.asarray(trained.ema_model.w[...])
    )
    assert not np.array_equal(np.asarray(loaded.model.w[...]), np.zeros(2))


def test_resuming_from_checkpoints_of_another_state_fails_instead_of_starting_over(tmp_path):
    train(_quadratic_task(), _config(num_steps=8, optimizer="adam"), tmp_path)
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        with pytest.raises(ValueError, match=r"no checkpoint in .* \(steps \[8, 4\]\) can be read"):
            train(_quadratic_task(), _config(num_steps=12, optimizer="sgd"), tmp_path)
    assert Checkpointer(tmp_path / "checkpoints").steps() == [4, 8]  # nothing overwritten


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"num_steps": 0}, "trainer.num_steps"),
        ({"batch_size": 3.5}, "trainer.batch_size"),
        ({"ema_decay": 1.0}, "trainer.ema_decay"),
        ({"schedule": "linear"}, "trainer.schedule"),
        ({"optimizer": "lion"}, "trainer.optimizer"),
        ({"learning_rate": 0.0}, "trainer.learning_rate"),
        ({"grad_clip_norm": -1.0}, "trainer.grad_clip_norm"),
    ],
)
def test_bad_trainer_settings_are_named(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        train(_quadratic_task(), _config(**override), tmp_path)


def test_batch_must_divide_over_devices(tmp_path, monkeypatch):
    from causalvision.train import distributed

    monkeypatch.setattr(distributed, "data_mesh", lambda: _FakeMesh(3))
    with pytest.raises(ValueError, match="batch_size: 8 is not divisible by the 3 devices"):
        train(_quadratic_task(), _config(), tmp_path)


class _FakeMesh:
    def __init__(self, size):
        self.size = size


def test_config_files_presets_and_overrides():
    config = load_config(f"{EXPERIMENT}:tiny", ["trainer.num_steps=7", "trainer.ema_decay=None"])
    assert config.trainer.num_steps == 7 and config.trainer.ema_decay is None
    assert config.data.size == 256  # the tiny preset
    assert load_config(EXPERIMENT).trainer.num_steps == 5_000
    changed = apply_overrides(
        config, ["model.widths=(4, 8)", "data.name=pendulum", "trainer.learning_rate=1"]
    )
    assert changed.model.widths == (4, 8) and changed.data.name == "pendulum"
    assert changed.trainer.learning_rate == 1.0 and isinstance(changed.trainer.learning_rate, float)
    assert config.data.name == "morpho_digits"  # overrides copy, never mutate
    for bad, message in [
        (["trainer.num_steps=many"], "expected int"),
        (["trainer.bogus=1"], "unknown field 'bogus'"),
        (["model.depth=3"], "unknown field 'depth'"),  # typed model settings
        (["model.widths=4"], "expected tuple"),
        (["model.standardise='median'"], "model.standardise: expected 'specs' or 'data'"),
        (["nothing"], "expected key=value"),
        (["trainer.num_steps=None"], "None is not allowed"),
    ]:
        with pytest.raises(ValueError, match=message):
            apply_overrides(config, bad)
    with pytest.raises(ValueError, match="no such file"):
        load_config("experiments/missing.py")
    with pytest.raises(ValueError, match="preset"):
        load_config(f"{EXPERIMENT}:huge")


def test_a_runs_config_json_loads_back_as_the_same_config(tmp_path):
    config = load_config(f"{EXPERIMENT}:tiny", ["model.widths=(4, 8)"])
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(config_to_dict(config)))
    assert load_config(saved) == config
    assert load_config(saved, ["trainer.num_steps=3"]).trainer.num_steps == 3
    with pytest.raises(ValueError, match="no presets"):
        load_config(f"{saved}:tiny")
    (tmp_path / "broken.json").write_text('{"version": 2, "data": {}}')
    with pytest.raises(ValueError, match=r"not a run's config\.json"):
        load_config(tmp_path / "broken.json")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"expected an experiment \.py file or a run's config"):
        load_config(tmp_path / "notes.txt")


def test_train_and_evaluate_the_tiny_experiment_end_to_end(tmp_path):
    config = load_config(
        f"{EXPERIMENT}:tiny", ["trainer.tensorboard=True", "trainer.ema_decay=0.5"]
    )
    calls = []

    def hook(step, model):
        calls.append(step)
        return {"hook_step": float(step)}

    result = train_and_evaluate(config, tmp_path, hooks=[hook])
    assert result.step == 20 and calls == [10, 20]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["task"] == "attribute_predictor" and saved["trainer"]["num_steps"] == 20
    metrics = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in metrics["train"]] == [5, 10, 15, 20]
    assert [r["step"] for r in metrics["eval"]] == [10, 20]
    assert [r["hook_step"] for r in metrics["eval"]] == [10.0, 20.0]
    last = metrics["eval"][-1]
    assert 0.0 <= last["digit_accuracy"] <= 1.0 and last["thickness_mae"] > 0
    assert all(np.isfinite(r["loss"]) for r in metrics["train"])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "curves.png").stat().st_size > 1000
    predictions = result.ema_model(jnp.zeros((2, 32, 32, 1), jnp.float32))
    assert predictions["digit"].shape == (2, 10) and predictions["thickness"].shape == (2,)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    status = cli_main(
        ["train", f"{EXPERIMENT}:tiny", "--workdir", str(tmp_path), "--set", "trainer.num_steps=x"]
    )
    assert status == 2
    assert "trainer.num_steps: expected int" in capsys.readouterr().err
    assert cli_main(["data", "build", "imagenet", "--size", "4", "--data-dir", str(tmp_path)]) == 2
    assert "morpho_digits" in capsys.readouterr().err


def test_cli_builds_a_dataset(tmp_path, capsys):
    status = cli_main(
        ["data", "build", "morpho_digits", "--size", "8", "--data-dir", str(tmp_path)]
    )
    assert status == 0
    assert "built morpho_digits" in capsys.readouterr().out
    from causalvision.data import load_source

    source = load_source("morpho_digits", "train", data_dir=tmp_path)
    assert len(source) == 8 and source[3]["image"].dtype == np.uint8


def test_loss_sees_a_different_key_every_step(tmp_path):
    seen = []

    def loss(model, batch, key):
        value = 0.5 * jnp.sum(model.w[...] ** 2) + 0.0 * jnp.mean(batch["x"])
        return value, {"draw": jax.random.uniform(key)}

    task = Task(
        init_model=Scalar, loss=loss, train_source=ArraySource({"x": np.zeros((16, 1), np.float32)})
    )
    train(task, _config(log_every=1, num_steps=4), tmp_path)
    seen = [r["draw"] for r in read_metrics(tmp_path / "metrics.jsonl")["train"]]
    assert len(set(seen)) == 4


def test_train_from_a_built_tfds_dataset(tmp_path):
    from causalvision.data import build_dataset

    build_dataset("morpho_digits", size=120, data_dir=tmp_path / "data", progress=False)
    overrides = ["data.source=tfds", f"data.data_dir={str(tmp_path / 'data')!r}"]
    overrides += ["trainer.num_steps=6", "trainer.eval_every=6", "trainer.log_every=3"]
    result = train_and_evaluate(load_config(f"{EXPERIMENT}:tiny", overrides), tmp_path / "run")
    assert result.step == 6
    evaluation = read_metrics(tmp_path / "run" / "metrics.jsonl")["eval"]
    assert evaluation[-1]["step"] == 6 and np.isfinite(evaluation[-1]["thickness_mae"])


def test_only_trainable_variables_change(tmp_path):
    class Two(nnx.Module):
        def __init__(self, rngs):
            self.trained = nnx.Param(jnp.zeros((2,), jnp.float32))
            self.frozen = nnx.Param(jnp.ones((2,), jnp.float32))

    def loss(model, batch, key):
        del key
        both = model.trained[...] + model.frozen[...]
        return jnp.sum((both - 3.0) ** 2) + 0.0 * jnp.mean(batch["x"]), {}

    task = Task(
        init_model=Two,
        loss=loss,
        train_source=ArraySource({"x": np.zeros((16, 1), np.float32)}),
        trainable=nnx.All(nnx.Param, nnx.PathContains("trained")),
    )
    result = train(task, _config(num_steps=40, ema_decay=None, learning_rate=0.1), tmp_path)
    np.testing.assert_array_equal(np.asarray(result.model.frozen[...]), 1.0)
    np.testing.assert_allclose(np.asarray(result.model.trained[...]), 2.0, atol=0.05)


@pytest.mark.parametrize(
    ("experiment", "presets"),
    [
        ("morpho_oracle", ("default", "demo", "tiny")),
        ("morpho_hvae", ("default", "demo", "tiny")),
        ("morpho_vae", ("default", "demo", "tiny")),
        ("morpho_hvae_cf", ("default", "tiny")),
        ("pendulum_hvae", ("default", "demo", "tiny")),
    ],
)
def test_every_experiment_preset_is_a_valid_config(experiment, presets):
    from causalvision.train import get_task

    path = EXPERIMENT.parent / f"{experiment}.py"
    for preset in presets:
        config = load_config(f"{path}:{preset}")  # types the model settings: unknown ones fail
        assert config.trainer.num_steps >= 1
        assert isinstance(config.model, get_task(config.task).settings)
    with pytest.raises(ValueError, match="preset: expected"):
        load_config(f"{path}:nonsense")


class TwoGroups(nnx.Module):
    """Two parameters the model sorts into groups "fast" and "slow"."""

    def __init__(self, rngs):
        del rngs
        self.fast = nnx.Param(jnp.zeros((2,), jnp.float32))
        self.slow = nnx.Param(jnp.zeros((2,), jnp.float32))

    def parameter_groups(self):
        return {
            "fast": nnx.All(nnx.Param, nnx.PathContains("fast")),
            "slow": nnx.All(nnx.Param, nnx.PathContains("slow")),
        }


def _two_group_task(**task_settings) -> Task:
    def loss(model, batch, key):
        del key
        value = 0.5 * jnp.sum((model.fast[...] - jnp.asarray(TARGET)) ** 2)
        value = value + 0.5 * jnp.sum((model.slow[...] - jnp.asarray(TARGET)) ** 2)
        return value + 0.0 * jnp.mean(batch["x"]), {}

    source = ArraySource({"x": np.zeros((16, 1), np.float32)})
    return Task(init_model=TwoGroups, loss=loss, train_source=source, **task_settings)


def _sgd_momentum(rate: float, steps: int) -> np.ndarray:
    w, momentum = np.zeros(2), np.zeros(2)
    for _ in range(steps):
        momentum = (w - TARGET) + 0.9 * momentum
        w = w - rate * momentum
    return w


def test_parameter_groups_get_their_own_learning_rate(tmp_path):
    config = _config(
        num_steps=5,
        grad_clip_norm=None,
        ema_decay=None,
        param_groups={"slow": {"learning_rate": 0.01}},
    )
    result = train(_two_group_task(), config, tmp_path)
    np.testing.assert_allclose(
        np.asarray(result.model.fast[...]), _sgd_momentum(0.05, 5), rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(result.model.slow[...]), _sgd_momentum(0.01, 5), rtol=1e-5
    )
    for groups, message in [
        ({"medium": {"learning_rate": 0.1}}, r"no group\(s\) \['medium'\]"),
        ({"slow": {"momentum": 0.5}}, r"param_groups\['slow'\]: unknown setting"),
        ({"slow": {"optimizer": "lion"}}, r"param_groups\['slow'\].optimizer: unknown name"),
    ]:
        with pytest.raises(ValueError, match=message):
            train(_two_group_task(), _config(param_groups=groups), tmp_path / "bad")
    with pytest.raises(ValueError, match="names no parameter groups"):
        train(_quadratic_task(), _config(param_groups={"slow": {}}), tmp_path / "none")


def test_trainable_groups_are_named_by_the_model(tmp_path):
    config = _config(num_steps=5, grad_clip_norm=None, ema_decay=None)
    result = train(_two_group_task(trainable_groups=("slow",)), config, tmp_path)
    np.testing.assert_array_equal(np.asarray(result.model.fast[...]), 0.0)
    np.testing.assert_allclose(
        np.asarray(result.model.slow[...]), _sgd_momentum(0.05, 5), rtol=1e-5
    )
    with pytest.raises(ValueError, match=r"trainable_groups: \['medium'\] are not groups"):
        train(_two_group_task(trainable_groups=("medium",)), config, tmp_path / "bad")


def test_initialisation_training_and_evaluation_draw_from_separate_streams(tmp_path):
    from causalvision.train import prng_streams

    streams = prng_streams(0)
    data = {name: np.asarray(jax.random.key_data(k)) for name, k in streams.items()}
    assert len({v.tobytes() for v in data.values()}) == 3

    class Drawn(nnx.Module):
        def __init__(self, rngs):
            self.w = nnx.Param(jax.random.uniform(rngs.params(), (2,)))

    def loss(model, batch, key):
        value = 0.5 * jnp.sum(model.w[...] ** 2) + 0.0 * jnp.mean(batch["x"])
        return value, {"draw": jax.random.uniform(key)}

    source = ArraySource({"x": np.zeros((16, 1), np.float32)})
    result = train(
        Task(init_model=Drawn, loss=loss, train_source=source),
        _config(num_steps=3, log_every=1, ema_decay=None),
        tmp_path,
    )
    draws = [r["draw"] for r in read_metrics(tmp_path / "metrics.jsonl")["train"]]
    expected = [
        float(jax.random.uniform(jax.random.fold_in(streams["train"], k))) for k in range(3)
    ]
    np.testing.assert_allclose(draws, expected, rtol=1e-6)
    # The parameters were drawn from the init stream, never from a step's key.
    initial = np.asarray(Drawn(nnx.Rngs(streams["init"])).w[...])
    assert not np.allclose(initial, np.asarray(Drawn(nnx.Rngs(streams["train"])).w[...]))
    assert result.step == 3


def test_a_task_defined_outside_the_library_is_found_by_module_path(tmp_path):
    """`task = "module:TASK"` trains, and `load_run` restores it from config.json alone."""
    from causalvision.train import Config, DataConfig, load_run

    config = Config(
        task="test_train:QUADRATIC",
        data=DataConfig(size=8),
        trainer=_config(num_steps=4, ema_decay=None),
        model={"target": (1.0, 2.0)},
    )
    result = train_and_evaluate(config, tmp_path)
    restored_config, restored = load_run(tmp_path)
    assert restored_config.model == QuadraticSettings(target=(1.0, 2.0))
    np.testing.assert_array_equal(
        np.asarray(restored.model.w[...]), np.asarray(result.model.w[...])
    )
    with pytest.raises(ValueError, match="task: unknown name 'nothing'"):
        train_and_evaluate(dataclasses.replace(config, task="nothing"), tmp_path / "x")


@dataclasses.dataclass(frozen=True)
class QuadraticSettings:
    target: tuple[float, float] = (3.0, -4.0)


def _quadratic_spec():
    from causalvision.train import TaskSpec

    def build_model(config):
        return Scalar

    def build(config):
        target = jnp.asarray(config.model.target, jnp.float32)

        def loss(model, batch, key):
            del key
            return 0.5 * jnp.sum((model.w[...] - target) ** 2) + 0.0 * jnp.mean(batch["x"]), {}

        source = ArraySource({"x": np.zeros((config.data.size, 1), np.float32)})
        return Task(init_model=Scalar, loss=loss, train_source=source)

    return TaskSpec(settings=QuadraticSettings, build=build, build_model=build_model)


QUADRATIC = _quadratic_spec()


def test_configs_of_causalvision_0_1_are_upgraded_on_load():
    from causalvision.train import config_from_dict

    old_trainer = {"num_steps": 6, "batch_size": 16, "progress": False}
    deep = config_from_dict(
        {
            "task": "deep_scm",
            "data": {"name": "morpho_digits", "image_size": 64},
            "trainer": old_trainer,
            "model": {"image_model": "vae", "latent_dim": 4, "encoder_widths": [8, 16]},
        }
    )
    assert deep.model.image.latent_dim == 4 and deep.model.image.encoder_widths == (8, 16)
    assert deep.model.image.context_dim == 12  # filled from the dataset's attributes
    # 0.1 ordered and standardised the parents as set in code; upgraded runs keep that.
    assert deep.model.standardise == {"thickness": (2.5, 0.65), "intensity": (190.0, 45.0)}
    assert deep.model.order == ("thickness", "intensity", "digit")
    pendulum = config_from_dict(
        {
            "task": "attribute_predictor",
            "data": {"name": "pendulum", "image_size": 32},
            "trainer": old_trainer,
            "model": {"widths": [8], "hidden": 4},
        }
    )
    assert pendulum.data.options == {"image_size": 32}
    assert pendulum.model.standardise == "data"  # 0.1 predictors standardised by their data
    with pytest.raises(ValueError, match="newer than this causalvision"):
        config_from_dict({"version": 99, "task": "deep_scm"})


def test_a_run_of_causalvision_0_1_restores_to_the_same_answers(tmp_path):
    """tests/data/v1_deep_scm: a run written by 0.1 (old config layout, hand-set parent
    standardisation) loads and answers as the 0.1 code did (see its README)."""
    from causalvision.audit import held_out_examples, load_deep_scm, model_counterfactual
    from causalvision.data import MorphoDigits

    run = tmp_path / "run"
    shutil.copytree(pathlib.Path(__file__).parent / "data" / "v1_deep_scm", run)
    assert "version" not in json.loads((run / "config.json").read_text())
    config, _, scm = load_deep_scm(run)
    assert config.model.standardise == {"thickness": (2.5, 0.65), "intensity": (190.0, 45.0)}
    assert config.model.order == ("thickness", "intensity", "digit")  # 0.1's context columns
    examples = held_out_examples(config, 4)
    cf = model_counterfactual(scm, examples, {"thickness": 3.0}, MorphoDigits())
    expected = np.load(run / "expected.npz")
    np.testing.assert_allclose(np.asarray(cf["intensity"]), expected["intensity"], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(cf["image"]), expected["image"], atol=1e-2)
