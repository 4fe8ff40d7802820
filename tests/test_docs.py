"""The documentation site (docs/, issue 20): it builds with warnings as errors, every public
name has a docstring, the docstrings' ``>>>`` examples run, and the built pages load in
headless Chromium with no console errors and every image decoded.

The build here is the fast one: the tutorials are rendered, not executed (the notebook tests
execute them through the same executor, docs/_ext/tutorials.py), except that tutorial 01 is
given an executed notebook with a known text and image output (made here, not by running it),
which its page must show as ``make docs`` shows the notebooks it executes.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import pathlib
import subprocess
import sys
import time
import typing

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import tutorials  # noqa: E402

PACKAGES = (
    "causalvision",
    "causalvision.scm",
    "causalvision.graph",
    "causalvision.data",
    "causalvision.nn",
    "causalvision.losses",
    "causalvision.metrics",
    "causalvision.train",
    "causalvision.audit",
)
# Public names known to lack documentation, each with why it is not fixed here. A type alias
# takes its documentation from a "#:" comment above it in its module's source.
BUILD_BUDGET_S = 120  # about 25 s on a quiet 2-core machine


EXECUTED = "01_compose_an_scm.py"  # given an executed notebook in the build
MARKER = "output of an executed cell, as make docs renders it"


def _png() -> str:
    """A small matplotlib figure as base64 PNG, as the inline backend would output it."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(2, 1.5), dpi=50)
    axes.plot([0, 1, 2], [0, 1, 4])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _executed_notebook(out: pathlib.Path) -> None:
    """Tutorial 01 with outputs on its first code cell after the parameters, saved to `out`
    as tutorials.execute_all saves an execution (with its content hash)."""
    import jupytext
    import nbformat

    notebook = jupytext.read(ROOT / "notebooks" / EXECUTED)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    code[1].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=MARKER + "\n"),
        nbformat.v4.new_output(
            "display_data", data={"image/png": _png(), "text/plain": "<Figure>"}
        ),
    ]
    tutorials.save(notebook, EXECUTED, out)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    """The site built as `make docs` builds it (-W --keep-going), tutorials not executed but
    for an executed notebook of 01 (:func:`_executed_notebook`)."""
    out = tmp_path_factory.mktemp("docs")
    _executed_notebook(out / "tutorials")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-E", "-q"]
    command += ["-D", f"tutorials_executed={out / 'tutorials'}"]
    command += ["-d", str(out / "doctrees"), "docs", str(out / "html")]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert done.returncode == 0, "\n".join(warnings) or done.stderr[-5000:]
    assert seconds < BUILD_BUDGET_S, f"docs build took {seconds:.0f} s"
    return out / "html"


def test_site_has_every_page(site):
    for page in ("index", "getting_started", "audits", "reproducing", "performance", "api/nn"):
        assert (site / f"{page}.html").is_file(), page
    for notebook in sorted((ROOT / "notebooks").glob("[0-9]*.py")):
        assert (site / "tutorials" / f"{notebook.stem}.html").is_file(), notebook.name
    unexecuted = (site / "tutorials" / "02_counterfactual_images.html").read_text()
    assert "cell_output" not in unexecuted  # no executed notebook given: the source, no outputs
    performance = (site / "performance.html").read_text()
    for result in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        assert f"benchmarks/results/{result.name}" in performance, result.name


def test_api_reference_lists_every_public_name(site):
    for package in PACKAGES[1:]:
        page = (site / "api" / f"{package.split('.')[-1]}.html").read_text()
        for name in importlib.import_module(package).__all__:
            assert f"{name}</" in page or f".{name}" in page, f"{package}.{name}"


def _documented_data(package: str, name: str) -> bool:
    """Whether some module under `package` documents data `name` with a ``#:`` comment."""
    from sphinx.pycode import ModuleAnalyzer

    value = getattr(sys.modules[package], name)
    for modname, module in sorted(sys.modules.items()):
        if modname == package or modname.startswith(package + "."):
            if getattr(module, name, None) is value:
                try:
                    if ("", name) in ModuleAnalyzer.for_module(modname).find_attr_docs():
                        return True
                except Exception:
                    continue
    return False


def test_every_public_name_has_a_docstring():
    missing = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        assert (module.__doc__ or "").strip(), package
        for name in module.__all__:
            obj, full = getattr(module, name), f"{package}.{name}"
            if inspect.ismodule(obj):
                continue
            if inspect.isclass(obj):
                documented = bool((obj.__dict__.get("__doc__") or "").strip())
            elif inspect.isroutine(obj) or (callable(obj) and typing.get_origin(obj) is None):
                documented = bool((getattr(obj, "__doc__", None) or "").strip())
            else:  # constants and type aliases: a "#:" comment where they are defined
                documented = _documented_data(package, name)
            if not documented:
                missing.append(full)
    assert not missing, f"public names without a docstring: {missing}"


def _doctests() -> list[doctest.DocTest]:
    """Every ``>>>`` example in causalvision's docstrings (only modules that have one are
    imported)."""
    finder, tests = doctest.DocTestFinder(exclude_empty=True), []
    for path in sorted((ROOT / "causalvision").rglob("*.py")):
        if ">>>" not in path.read_text():
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        modname = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        module = importlib.import_module(modname)
        tests += [t for t in finder.find(module, modname) if t.examples]
    return tests


def test_docstring_examples_run():
    tests = _doctests()
    names = {t.name for t in tests}
    assert len(tests) >= 3, names
    assert "causalvision.graph.causal_graph.CausalGraph.identify" in names, names
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    slow = []
    for test in tests:
        start = time.perf_counter()
        runner.run(test)
        if (seconds := time.perf_counter() - start) > 5.0:
            slow.append((test.name, round(seconds, 1)))
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} docstring example(s) failed (output above)"
    assert not slow, f"docstring examples should run in about a second: {slow}"


@pytest.mark.parametrize(
    ("page", "min_images"),
    [("index.html", 1), ("tutorials/01_compose_an_scm.html", 1), ("performance.html", 3)],
)
def test_pages_load_in_chromium(site, page, min_images, browser):
    browser.get((site / page).resolve().as_uri())
    severe = [m for m in browser.get_log("browser") if m["level"] == "SEVERE"]
    assert not severe, severe
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.src, i.complete, i.naturalWidth]);"
    )
    assert len(images) >= min_images, images
    assert all(done and width > 0 for _, done, width in images), images
    title = browser.execute_script("return document.querySelector('h1').textContent")
    assert title.strip(), page


def test_executed_tutorial_shows_its_outputs(site, browser):
    """An executed notebook's page shows its text output and its figure, decoded."""
    browser.get((site / "tutorials" / "01_compose_an_scm.html").resolve().as_uri())
    outputs = browser.execute_script(
        "return Array.from(document.querySelectorAll('.cell_output')).map(o => o.innerText);"
    )
    assert any(MARKER in text for text in outputs), outputs
    images = browser.execute_script(
        "return Array.from(document.querySelectorAll('.cell_output img'))"
        ".map(i => [i.src, i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    assert len(images) == 1, images
    assert all(done and width == 100 and height == 75 for _, done, width, height in images), images


def test_tutorial_executions_are_skipped_when_unchanged(tmp_path):
    """make docs executes a tutorial again only when its source or settings changed."""
    import nbformat

    ran = []

    def run(name, settings):
        ran.append(name)
        return nbformat.v4.new_notebook()

    first, second = tutorials.names()[:2]
    assert tutorials.execute_all(tmp_path, [first, second], run=run, log=print) == [first, second]
    assert tutorials.execute_all(tmp_path, [first, second], run=run, log=print) == []
    assert tutorials.is_current(first, tmp_path)
    changed = {**tutorials.DOCS, first: {**tutorials.DOCS[first], "seed": 7}}
    assert not tutorials.is_current(first, tmp_path, changed)
    assert tutorials.execute_all(tmp_path, [first, second], changed, run=run) == [first]
    assert tutorials.execute_all(tmp_path, [second], run=run, force=True) == [second]
    (tmp_path / f"{pathlib.Path(second).stem}.sha256").write_text("0" * 64)  # source changed
    assert tutorials.execute_all(tmp_path, [second], run=run) == [second]
    assert ran == [first, second, first, second, second]
