"""What a query compiles: one program per query structure and shapes, nothing on a repeat, and
the persistent compilation cache that the CLI and the notebooks turn on."""

import logging
import os
import subprocess
import sys

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist

from causalvision.scm import SCM, Inference, LinearGaussian, NumpyroMechanism, Root


def _compiled(caplog, fn) -> list[str]:
    """The programs `fn()` compiles (their names), from JAX's compile log."""
    caplog.clear()
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        jax.block_until_ready(fn())
    return [
        r.getMessage().split("(")[1].split(")")[0]
        for r in caplog.records
        if r.getMessage().startswith("Compiling ")
    ]


def test_inference_twin_world_compiles_one_program_once(caplog):
    def y_model(X, M):
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))
        return 0.6 * X + 1.5 * M + u

    settings = Inference(method="svi", num_steps=20, learning_rate=0.02, obs_scale=0.01)
    scm = SCM({
        "X": Root(dist.Normal(0.0, 1.0)),
        "M": LinearGaussian(["X"], weights=[0.8]),
        "Y": NumpyroMechanism(["X", "M"], y_model, settings),
    })  # fmt: skip
    rng = np.random.default_rng(0)
    n = 37  # a batch size no other test uses: the first call must compile

    def factual():
        x = rng.normal(size=n).astype(np.float32)
        m = (0.8 * x + rng.normal(size=n)).astype(np.float32)
        return {"X": x, "M": m, "Y": (0.6 * x + 1.5 * m + rng.normal(size=n)).astype(np.float32)}

    def query(seed):
        return lambda: scm.twin_world({"X": 1.0}, factual=factual(), key=jax.random.key(seed))

    # One program: the query. The input checks count on the host (CPU), compiling nothing;
    # `jnp.asarray` of a numpy column compiles JAX's own trivial copy, "stage", once per shape.
    first = _compiled(caplog, query(0))
    assert [p for p in first if p != "stage"] == ["_posterior_worlds_impl"], first
    # New data, key and intervention value: nothing recompiles.
    assert _compiled(caplog, query(1)) == []
    other_value = lambda: scm.twin_world({"X": -2.0}, factual=factual(), key=jax.random.key(2))
    assert _compiled(caplog, other_value) == []


def _run(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_enable_compilation_cache_defaults_and_switch(tmp_path, uncached_env):
    env = {**uncached_env, "HOME": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    env.pop("CAUSALVISION_CACHE_DIR", None)
    # Before JAX is imported: only the environment is set, and JAX picks it up.
    out = _run(
        "import sys, causalvision\n"
        "d = causalvision.enable_compilation_cache()\n"
        "assert 'jax' not in sys.modules\n"
        "import jax, jax.numpy as jnp\n"
        "jax.jit(lambda x: x * 3 + 1)(jnp.ones(5)).block_until_ready()\n"
        "print(d)",
        env,
    )
    default = tmp_path / ".cache" / "causalvision" / "jax"
    assert out == str(default)
    assert any(default.iterdir())  # the tiny program was cached (no minimum compile time)
    # After JAX is imported, with an explicit path: JAX's configuration is updated.
    where = tmp_path / "elsewhere"
    out = _run(
        "import jax, causalvision\n"
        f"d = causalvision.enable_compilation_cache({str(where)!r})\n"
        "print(d, jax.config.jax_compilation_cache_dir,"
        " jax.config.jax_persistent_cache_min_compile_time_secs)",
        env,
    )
    assert out == f"{where} {where} 0.0"
    # CAUSALVISION_CACHE_DIR="" switches it off; JAX_COMPILATION_CACHE_DIR, if set, wins.
    off = {**env, "CAUSALVISION_CACHE_DIR": ""}
    assert _run("import causalvision; print(causalvision.enable_compilation_cache())", off) == (
        "None"
    )
    mine = {**off, "JAX_COMPILATION_CACHE_DIR": str(where)}
    assert _run("import causalvision; print(causalvision.enable_compilation_cache())", mine) == (
        str(where)
    )
    assert os.environ.get("JAX_COMPILATION_CACHE_DIR") != str(where)  # this process untouched
