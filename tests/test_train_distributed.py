"""The trainer across devices, processes and a SIGKILL: each run is a real subprocess."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import portpicker
import pytest

WORKER = pathlib.Path(__file__).with_name("train_worker.py")
ROOT = WORKER.parent.parent


def _env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    env.pop("XLA_FLAGS", None)
    return env


def _run(workdir, *args, timeout=180) -> str:
    out = subprocess.run(
        [sys.executable, str(WORKER), str(workdir), *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _params(workdir, process=0) -> dict:
    with np.load(pathlib.Path(workdir) / f"params_{process}.npz") as f:
        return {k: f[k] for k in f.files}


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one_device")
    _run(workdir)
    return workdir


def test_eight_fake_devices_train_like_one(one_device_run, tmp_path):
    out = _run(tmp_path, "--devices", "8")
    assert "devices=8" in out
    one, eight = _params(one_device_run), _params(tmp_path)
    assert _max_difference(one, eight) < 1e-5
    # The runs moved far from the initialisation, so agreement is not trivial.
    assert max(float(np.abs(v).max()) for v in one.values()) > 0.1


@pytest.mark.multiprocess
def test_two_processes_train_identically_and_restore(one_device_run, tmp_path):
    port = portpicker.pick_unused_port()
    commands = [
        [
            sys.executable,
            str(WORKER),
            str(tmp_path),
            "--devices=2",
            f"--coordinator=127.0.0.1:{port}",
            "--num-processes=2",
            f"--process-id={k}",
            "--restore-check",
        ]
        for k in range(2)
    ]
    procs = [
        subprocess.Popen(c, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
        assert "devices=4" in stdout
        assert "restored step=24 equal=True" in stdout  # the orbax checkpoint reads back in both
    first, second = _params(tmp_path, 0), _params(tmp_path, 1)
    assert _max_difference(first, second) == 0.0
    # The same global batches as one process with one device: the same parameters.
    assert _max_difference(first, _params(one_device_run)) < 1e-5


@pytest.mark.multiprocess
def test_a_held_workdir_stops_every_process_of_a_multi_host_run(tmp_path):
    from causalvision.train import workdir

    port = portpicker.pick_unused_port()
    commands = [
        [
            sys.executable,
            str(WORKER),
            str(tmp_path),
            f"--coordinator=127.0.0.1:{port}",
            "--num-processes=2",
            f"--process-id={k}",
        ]
        for k in range(2)
    ]
    fd = workdir.acquire(tmp_path)  # process 0 alone looks at the lock, and tells process 1
    try:
        procs = [
            subprocess.Popen(
                c, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for c in commands
        ]
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        workdir.release(fd)
    (_, first), (_, second) = outputs
    assert procs[0].returncode != 0 and procs[1].returncode != 0
    assert f"WorkdirBusyError: workdir: {tmp_path} is in use by another run" in first
    assert f"WorkdirBusyError: workdir: process 0 could not take '{tmp_path}'" in second
    assert not (tmp_path / "checkpoints").exists()


def _finished_steps(checkpoints: pathlib.Path) -> list[int]:
    if not checkpoints.exists():
        return []
    return sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    noise = ("--noise", "0.05")  # exact replay needs the restored PRNG key as well as the data
    _run(tmp_path / "straight", *noise)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(killed), *noise, "--sleep", "0.01"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not _finished_steps(killed / "checkpoints"):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    steps = _finished_steps(killed / "checkpoints")
    assert steps and steps[-1] < 24, f"the run was not killed mid-training: {steps}"
    assert not (killed / "params_0.npz").exists()

    _run(killed, *noise)  # resumes from the last finished checkpoint
    assert _max_difference(_params(killed), _params(tmp_path / "straight")) == 0.0


def test_the_installed_program_keeps_a_persistent_compilation_cache(tmp_path):
    cache = tmp_path / "cache"
    # Cache every program: the tiny run's programs compile in under the 1 s default threshold.
    env = dict(_env(), CAUSALVISION_CACHE_DIR=str(cache))
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    command = [sys.executable, "-c", "from causalvision.cli import console; console()", "train"]
    config = str(ROOT / "experiments" / "morpho_oracle.py:tiny")
    out = subprocess.run(
        [*command, config, "--workdir", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert any(cache.iterdir()), "no compiled program was cached"
