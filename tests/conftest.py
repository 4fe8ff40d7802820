"""Strict test settings, and one compilation cache shared by every test and subprocess.

Strict promotion: mistakes in shapes and dtypes surface as errors, not silent casts. The
persistent compilation cache lets a program compiled once (a tiny HVAE's train step, a
counterfactual query) load from disk wherever the same program comes back: in another test,
a notebook kernel or a CLI subprocess. It starts empty in every session. Parallel workers
share it without a lock (JAX's lock comes with size-bounded eviction, which rescans the
directory on every write: 80 s more for the suite); an entry read while another process
writes it fails to decompress, and JAX then warns and compiles instead.
"""

import atexit
import os
import pathlib
import shutil
import tempfile

import jax
import pytest

# Set by this file for the session; benchmarks time compilation, so they run without it.
CACHE_VARIABLES = (
    "JAX_COMPILATION_CACHE_DIR",
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
)

# XLA's CPU backend without LLVM's optimisations: the suite is mostly tiny programs whose
# compilation dominates their run time (a third less wall time on compile-heavy files), and
# tests assert values, not speed. Set before the backend starts; subprocesses and notebook
# kernels inherit it, so they share the compilation cache's entries. Benchmarks run outside
# the suite keep the default.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    _flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0"
    os.environ["XLA_FLAGS"] = _flags.strip()

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="causalvision-test-jax-cache-")
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE  # subprocesses and notebook kernels
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    # Every program, not only those over 1 s: tiny models compile in many short programs.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    """Headless Chromium from the system (Debian's chromium and chromium-driver, which
    .ci/run installs; missing, the test fails rather than skips), recording the console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not pathlib.Path(p).exists()]
    assert not missing, f"{missing} missing: apt-get install chromium chromium-driver (.ci/run)"
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def uncached_env() -> dict[str, str]:
    """The environment without the session's compilation cache (for benchmark subprocesses)."""
    return {k: v for k, v in os.environ.items() if k not in CACHE_VARIABLES}


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)
