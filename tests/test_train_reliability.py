"""No lost or mixed runs, no silent corruption: workdir locks, checkpoint digests, failed saves
and unusable workdirs, each a rule with its named error."""

import dataclasses
import errno
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from test_train import EXPERIMENT, Scalar, _config, _quadratic_task

from causalvision.cli import main as cli_main
from causalvision.data import ArraySource
from causalvision.train import (
    Checkpointer,
    CheckpointSaveError,
    Config,
    DataConfig,
    NonFiniteLossError,
    Task,
    TaskSpec,
    WorkdirBusyError,
    config_to_dict,
    load_config,
    load_run,
    read_metrics,
    restore,
    train,
    train_and_evaluate,
)
from causalvision.train import workdir as workdir_lock
from causalvision.train.checkpoint import DIGESTS

TESTS = pathlib.Path(__file__).parent


def _arrays(result) -> dict[str, np.ndarray]:
    """The model's and the EMA's parameters, by name."""
    out = {}
    for name, model in (("model", result.model), ("ema", result.ema_model)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param)):
            out[f"{name}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    return out


def _assert_identical(a, b) -> None:
    left, right = _arrays(a), _arrays(b)
    assert left.keys() == right.keys()
    for name in left:
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


# ---------------------------------------------------------------------------------------
# One run per workdir.


@dataclasses.dataclass(frozen=True)
class SleepySettings:
    seconds_per_example: float = 0.0


def _sleepy_spec() -> TaskSpec:
    """The quadratic task, its data served slowly (so a run holds its workdir a while)."""

    def build(config):
        delay = config.model.seconds_per_example

        def slow(example):
            time.sleep(delay)
            return example

        task = _quadratic_task()
        return dataclasses.replace(task, transforms=(slow,) if delay else ())

    return TaskSpec(settings=SleepySettings, build=build, build_model=lambda config: Scalar)


SLEEPY = _sleepy_spec()


def _cli(config: pathlib.Path, workdir: pathlib.Path, *overrides: str) -> list[str]:
    sets = [arg for override in overrides for arg in ("--set", override)]
    command = [sys.executable, "-m", "causalvision.cli", "train", str(config)]
    return [*command, "--workdir", str(workdir), *sets]


def _env() -> dict:
    path = os.pathsep.join([str(TESTS.parent), str(TESTS)])
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=path)
    env.pop("XLA_FLAGS", None)
    return env


def _wait_for_holder(lock: pathlib.Path, process, log: pathlib.Path, timeout=120) -> dict:
    """What the lock file says once `process` holds it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        text = lock.read_text() if lock.exists() else ""
        if text and json.loads(text)["pid"] == process.pid:
            return json.loads(text)
        time.sleep(0.05)
    raise AssertionError(f"the first run never took {lock}")


def test_a_second_run_is_refused_and_a_killed_run_leaves_no_stale_lock(tmp_path):
    config = tmp_path / "sleepy.json"
    settings = Config(
        task="test_train_reliability:SLEEPY",
        data=DataConfig(size=64),
        trainer=_config(num_steps=100_000, checkpoint_every=100_000, log_every=1_000),
        model={"seconds_per_example": 0.2},
    )
    config.write_text(json.dumps(config_to_dict(settings)))
    run = tmp_path / "run"

    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(_cli(config, run), env=_env(), stdout=out, stderr=out)
    try:
        holder = _wait_for_holder(run / workdir_lock.LOCK_NAME, first, log)
        written = (run / "config.json").read_bytes()

        second = subprocess.run(
            _cli(config, run), env=_env(), capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2, second.stderr[-3000:]
        assert "Traceback" not in second.stderr
        last = second.stderr.strip().splitlines()[-1]
        assert last == (
            f"causalvision: error: workdir: {run} is in use by another run (pid {first.pid} "
            f"on host {socket.gethostname()}, since {holder['since']}); wait for it or "
            "choose another workdir"
        )
        assert first.poll() is None  # the first run goes on, its config untouched
        assert (run / "config.json").read_bytes() == written
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)

    # The dead run's record stays in the file, but the kernel dropped its lock.
    assert json.loads((run / workdir_lock.LOCK_NAME).read_text())["pid"] == first.pid
    third = subprocess.run(
        _cli(config, run, "trainer.num_steps=2", "model.seconds_per_example=0.0"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert third.returncode == 0, third.stderr[-3000:]
    assert Checkpointer(run / "checkpoints", read_only=True).steps() == [2]
    assert (run / workdir_lock.LOCK_NAME).read_text() == ""  # released: names no one


def test_a_held_workdir_refuses_every_training_entry_and_is_left_as_it_was(tmp_path):
    config = Config(
        task="test_train:QUADRATIC", data=DataConfig(size=8), trainer=_config(num_steps=4)
    )
    fd = workdir_lock.acquire(tmp_path)
    try:
        busy = rf"workdir: {tmp_path} is in use by another run \(pid {os.getpid()} on host "
        with pytest.raises(WorkdirBusyError, match=busy):
            train(_quadratic_task(), _config(), tmp_path)
        with pytest.raises(WorkdirBusyError, match=busy):
            train_and_evaluate(config, tmp_path)
    finally:
        workdir_lock.release(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == [workdir_lock.LOCK_NAME]
    # Reading a run needs no lock; a run that failed released its own.
    train_and_evaluate(config, tmp_path)
    fd = workdir_lock.acquire(tmp_path)
    try:
        assert load_run(tmp_path)[1].step == 4
    finally:
        workdir_lock.release(fd)


def test_a_run_that_fails_releases_the_workdir(tmp_path):
    x = np.zeros((64, 1), np.float32)
    x[8 * 2] = np.nan
    with pytest.raises(NonFiniteLossError):
        train(_quadratic_task(x), _config(log_every=1), tmp_path, shuffle=False)
    workdir_lock.release(workdir_lock.acquire(tmp_path))


def test_unusable_workdirs_and_unknown_names_are_refused_before_config_json(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    with pytest.raises(ValueError, match=r"workdir: '.*file' is not a directory"):
        train(_quadratic_task(), _config(), a_file)

    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: answer as a read-only mount does
        access = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode, **kw: p != readonly and access(p, mode, **kw)
        )
    with pytest.raises(ValueError, match=r"workdir: '.*readonly' is not writable"):
        train(_quadratic_task(), _config(), readonly)
    assert list(readonly.iterdir()) == []

    unknown = load_config(f"{EXPERIMENT}:tiny", ["data.name='nothing'"])
    with pytest.raises(ValueError, match=r"data\.name: unknown name 'nothing'"):
        train_and_evaluate(unknown, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_load_run_names_a_config_json_that_is_not_an_object(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"'.*config\.json': expected a JSON object, got a list"):
        load_run(tmp_path)


# ---------------------------------------------------------------------------------------
# Checkpoint digests.


class Wide(nnx.Module):
    """1024 random parameters: enough bytes that orbax stores them in plain zstd blocks."""

    def __init__(self, rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (1024,)))


def _wide_task() -> Task:
    def loss(model, batch, key):
        del key
        return 0.5 * jnp.sum(model.w[...] ** 2) + 0.0 * jnp.mean(batch["x"]), {}

    source = ArraySource({"x": np.zeros((64, 1), np.float32)})
    return Task(init_model=Wide, loss=loss, train_source=source)


def test_flipped_bytes_in_the_newest_checkpoint_never_load(tmp_path):
    """A byte flipped in the middle of every data file of step 8: the run resumes from step
    4 and ends bit-identical to an uninterrupted one. Which leaves the flips hit depends on
    how orbax laid the files out, so the full state is read (as a resume reads it); the
    deterministic digest mismatch is `test_a_corrupt_newest_checkpoint_is_skipped_...`."""
    straight = train(_wide_task(), _config(), tmp_path / "straight")
    train(_wide_task(), _config(num_steps=8), tmp_path / "run")
    data = tmp_path / "run" / "checkpoints" / "8" / "state" / "ocdbt.process_0" / "d"
    flipped = 0
    for path in data.iterdir():
        if path.stat().st_size > 1024:  # array data, not b-tree nodes
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 0x40
            path.write_bytes(bytes(raw))
            flipped += 1
    assert flipped
    # orbax reads most such flips without an error (zstd frames carry no checksum here); the
    # digest refuses them, and a flip that breaks a frame makes the step unreadable.
    with pytest.warns(UserWarning, match=r"skipping unreadable checkpoint .*8: "):
        resumed = train(_wide_task(), _config(), tmp_path / "run")
    assert resumed.step == 12
    _assert_identical(resumed, straight)


def _mix_in_older_state(checkpoints: pathlib.Path) -> None:
    """Step 8 with step 4's state: valid files orbax reads without a word (what two runs
    writing one workdir, or a bad copy, leave)."""
    shutil.rmtree(checkpoints / "8" / "state")
    shutil.copytree(checkpoints / "4" / "state", checkpoints / "8" / "state")


def test_a_corrupt_newest_checkpoint_is_skipped_and_the_run_resumes_exactly(tmp_path):
    straight = train(_quadratic_task(), _config(), tmp_path / "straight")
    train(_quadratic_task(), _config(num_steps=8), tmp_path / "run")
    _mix_in_older_state(tmp_path / "run" / "checkpoints")
    digest = r"skipping unreadable checkpoint .*8: \w+(/0)?/w/value does not match the sha256"
    with pytest.warns(UserWarning, match=digest):
        with pytest.raises(ValueError, match=r"step: checkpoint 8 .* does not match the sha256"):
            restore(_quadratic_task(), _config(), tmp_path / "run", step=8)
        assert restore(_quadratic_task(), _config(), tmp_path / "run").step == 4
    with pytest.warns(UserWarning, match=digest):
        resumed = train(_quadratic_task(), _config(), tmp_path / "run")  # from step 4
    assert resumed.step == 12
    _assert_identical(resumed, straight)


def test_the_non_finite_guard_names_only_a_verified_checkpoint(tmp_path):
    train(_quadratic_task(), _config(num_steps=8), tmp_path)
    _mix_in_older_state(tmp_path / "checkpoints")
    x = np.zeros((64, 1), np.float32)
    x[8 * 5] = np.nan  # step index 5: after resuming from 4, before the save at 8
    with pytest.warns(UserWarning, match=r"skipping unreadable checkpoint .*8"):
        with pytest.raises(NonFiniteLossError, match=r"at step 5; .* verifies is step 4 in "):
            train(_quadratic_task(x), _config(log_every=1), tmp_path, shuffle=False)


def test_checkpoints_without_digests_load_but_never_count_as_verified(tmp_path):
    """Steps of causalvision 0.1 have no digests: they load as before, without a warning."""
    trained = train(_quadratic_task(), _config(num_steps=8), tmp_path)
    for step in (4, 8):
        meta = tmp_path / "checkpoints" / str(step) / "meta" / "metadata"
        values = json.loads(meta.read_text())
        del values[DIGESTS]
        meta.write_text(json.dumps(values))
    loaded = restore(_quadratic_task(), _config(), tmp_path)  # warnings are errors here
    assert loaded.step == 8
    _assert_identical(loaded, trained)
    x = np.zeros((128, 1), np.float32)
    x[8 * 9] = np.nan
    with pytest.raises(NonFiniteLossError, match=r"at step 9; .* No checkpoint in .* verifies"):
        train(_quadratic_task(x), _config(log_every=1), tmp_path, shuffle=False)


# ---------------------------------------------------------------------------------------
# Failed saves.


def _no_space(monkeypatch, at: int) -> None:
    """The background write of step `at`'s metadata fails as on a full disk."""
    handler = ocp.handlers.JsonCheckpointHandler
    write = handler._save_fn  # orbax's writer, run in the background save thread

    async def full_disk(self, item, directory):
        if item.get("step") == at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return await write(self, item, directory)

    monkeypatch.setattr(handler, "_save_fn", full_disk)


def test_a_failed_background_save_stops_training_with_one_clear_error(tmp_path, monkeypatch):
    reference = train(_quadratic_task(), _config(num_steps=4), tmp_path / "reference")
    run = tmp_path / "run"
    _no_space(monkeypatch, at=8)
    with pytest.raises(CheckpointSaveError) as caught:
        train(_quadratic_task(), _config(num_steps=40, log_every=1), run)
    assert str(caught.value) == (
        f"could not save checkpoint 8 in {run / 'checkpoints'}: [Errno 28] No space left on device"
    )
    # Stopped within one checkpoint interval of the failure (at the first step boundary after
    # the background write failed), and step 4 is as it was.
    assert read_metrics(run / "metrics.jsonl")["train"][-1]["step"] <= 8 + 4
    assert Checkpointer(run / "checkpoints", read_only=True).steps() == [4]
    _assert_identical(restore(_quadratic_task(), _config(), run), reference)

    monkeypatch.undo()  # space again: the same workdir resumes from step 4
    assert train(_quadratic_task(), _config(num_steps=12), run).step == 12


def test_the_command_line_reports_a_failed_save_in_one_line(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.json"
    settings = Config(
        task="test_train:QUADRATIC", data=DataConfig(size=64), trainer=_config(num_steps=40)
    )
    config.write_text(json.dumps(config_to_dict(settings)))
    _no_space(monkeypatch, at=8)
    assert cli_main(["train", str(config), "--workdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"causalvision: error: could not save checkpoint 8 in {tmp_path / 'run' / 'checkpoints'}"
        ": [Errno 28] No space left on device"
    )


def test_a_save_that_cannot_start_stops_training_at_its_step(tmp_path, monkeypatch):
    save = ocp.CheckpointManager.save

    def read_only(self, step, *args, **kwargs):
        if step == 8:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", read_only)
    with pytest.raises(CheckpointSaveError, match=r"checkpoint 8 in .*: \[Errno 30\] Read-only"):
        train(_quadratic_task(), _config(num_steps=40, log_every=1), tmp_path)
    assert read_metrics(tmp_path / "metrics.jsonl")["train"][-1]["step"] == 8
    assert Checkpointer(tmp_path / "checkpoints", read_only=True).steps() == [4]
