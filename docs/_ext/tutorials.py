"""The tutorials (``notebooks/[0-9]*.py``, jupytext percent scripts): one executor shared by
the test suite and the documentation site, and the Sphinx extension that renders them.

* :func:`execute` runs one tutorial with nbclient after replacing its ``parameters`` cell by
  small settings (:data:`SUITE` for tests/test_notebooks.py, :data:`DOCS` for the site), in a
  temporary ``workdir``. The tutorials' own defaults are their full size.
* ``python docs/_ext/tutorials.py --out DIR`` (``make docs`` runs it) writes each tutorial
  executed at :data:`DOCS` as ``DIR/NAME.ipynb``, outputs and images included, next to
  ``DIR/NAME.sha256``: the hash of the source and settings it ran. A tutorial whose hash is
  unchanged is skipped, so a second ``make docs`` executes nothing (a change to the library
  alone does not count: ``--force`` re-executes).
* As a Sphinx extension: with ``-D tutorials_executed=DIR`` each page ``tutorials/NAME`` shows
  ``DIR/NAME.ipynb`` instead of the unexecuted source (a stale one is a build warning); one
  without an executed notebook there, and every page of a build without the option (the
  suite's fast build), shows its source unexecuted. myst-nb never executes anything.

The library (``causalvision``) never imports this module.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

#: Settings of one tutorial: its parameters by name (each one its ``parameters`` cell sets).
Settings = Mapping[str, Any]

#: The test suite's settings: seconds of training each. 02, 05 and 07 train the tiny presets
#: (02 and 05 for their own step counts), the same programs as tests/test_deep_scm.py,
#: test_diffusion_scm.py and test_audit_worked.py, which the kernels then load from the
#: session's compilation cache.
SUITE: dict[str, Settings] = {
    "01_compose_an_scm.py": {"num_samples": 20_000, "fit_steps": 300, "seed": 1},
    "02_counterfactual_images.py": {"preset": "tiny", "num_steps": 6, "num_examples": 4},
    "03_deconfounding.py": {"num_steps": 30, "train_size": 256, "test_size": 64, "seed": 0},
    "04_slots.py": {"preset": "tiny", "num_steps": 2, "num_examples": 8},
    "05_diffusion_counterfactuals.py": {
        "preset": "morpho_tiny",
        "num_steps": 4,
        "num_examples": 4,
    },
    "06_counterfactual_captioning.py": {
        "preset": "tiny",
        "num_steps": 4,
        "ft_steps": 2,
        "num_eval": 8,
        "beam": 2,
    },
    "07_audit_a_classifier.py": {
        "suffix": "_tiny",
        "units": 32,
        "num_bootstrap": 200,
        "num_steps": 100,  # the suite checks the audit runs; test_audit_worked, its numbers
    },
}

#: The site's settings (``make docs``): the suite's presets, with a few hundred training steps
#: where a tiny model then shows something (02, 03, 05, 06), more examples in the pictures and
#: 01 at its own defaults: all seven in about 6 1/2 minutes on two CPU cores.
DOCS: dict[str, Settings] = {
    "01_compose_an_scm.py": {"num_samples": 100_000, "fit_steps": 1_000, "seed": 0},
    "02_counterfactual_images.py": {"preset": "tiny", "num_steps": 300, "num_examples": 8},
    "03_deconfounding.py": {"num_steps": 300, "train_size": 2_048, "test_size": 256, "seed": 0},
    "04_slots.py": {"preset": "tiny", "num_steps": 50, "num_examples": 8},
    "05_diffusion_counterfactuals.py": {
        "preset": "morpho_tiny",
        "num_steps": 100,
        "num_examples": 8,
    },
    "06_counterfactual_captioning.py": {
        "preset": "tiny",
        "num_steps": 200,
        "ft_steps": 60,
        "num_eval": 32,
        "beam": 2,
    },
    "07_audit_a_classifier.py": {"suffix": "_tiny", "units": 64, "num_bootstrap": 200},
}

TIMEOUT_S = 1_800  # one cell


def names() -> list[str]:
    """The tutorials, in order: ``notebooks/[0-9]*.py`` file names."""
    return sorted(p.name for p in NOTEBOOKS.glob("[0-9]*.py"))


def _assignment(name: str, value: Any) -> str:
    return f"{name} = {value!r}"


def _assigns(source: str, name: str) -> bool:
    return re.search(rf"^{re.escape(name)}\s*=", source, re.MULTILINE) is not None


def execute(
    name: str,
    settings: Mapping[str, Settings] = SUITE,
    *,
    timeout: int = TIMEOUT_S,
) -> Any:
    """Run tutorial `name` (``notebooks/NAME``) at ``settings[name]``; the executed notebook.

    The ``parameters`` cell is replaced by the settings (each must be a parameter that cell
    sets) and, if the tutorial has one, a temporary ``workdir`` removed afterwards. The
    kernel runs in ``notebooks/`` with this process's environment (the suite's XLA flags).
    Afterwards the ``parameters`` cell shows the settings it ran at above the tutorial's own
    defaults, commented out. A failing cell raises nbclient's ``CellExecutionError``.
    """
    import jupytext
    import nbclient

    notebook = jupytext.read(NOTEBOOKS / name)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{name}: {len(cells)} `parameters` cells, expected exactly one")
    cell, values = cells[0], settings[name]
    defaults = cell.source
    unknown = [k for k in values if not _assigns(defaults, k)]
    if unknown:
        raise ValueError(f"{name}: settings {unknown} are not parameters of the tutorial")
    env = dict(os.environ)
    shown = [_assignment(k, v) for k, v in values.items()]
    with tempfile.TemporaryDirectory(prefix=f"causalvision-{Path(name).stem}-") as workdir:
        extra = [_assignment("workdir", workdir)] if _assigns(defaults, "workdir") else []
        cell.source = "\n".join([*shown, *extra])
        client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=timeout)
        client.execute(cwd=str(NOTEBOOKS), env=env)
    cell.source = "\n".join(
        [
            "# Run here at small settings (docs/_ext/tutorials.py); the tutorial's own",
            "# defaults, its full size, were:",
            *[f"#   {line}" if line else "#" for line in defaults.splitlines()],
            *shown,
        ]
    )
    return notebook


def source_hash(name: str) -> str:
    """The SHA-256 of tutorial `name`'s source."""
    return hashlib.sha256((NOTEBOOKS / name).read_bytes()).hexdigest()


def content_hash(name: str, settings: Mapping[str, Settings] = DOCS) -> str:
    """The hash an execution of `name` at `settings` is recorded under: its source and its
    settings (``NAME.sha256`` beside the executed notebook)."""
    record = {"source": source_hash(name), "settings": settings[name]}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=repr).encode()).hexdigest()


def save(notebook: Any, name: str, out: Path, settings: Mapping[str, Settings] = DOCS) -> Path:
    """Write executed `notebook` to ``out/STEM.ipynb``, then its content hash."""
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    stem = Path(name).stem
    path = out / f"{stem}.ipynb"
    partial = path.with_suffix(".ipynb.partial")
    nbformat.write(notebook, partial)
    partial.replace(path)
    (out / f"{stem}.sha256").write_text(content_hash(name, settings) + "\n")
    return path


def is_current(name: str, out: Path, settings: Mapping[str, Settings] = DOCS) -> bool:
    """Whether ``out`` holds `name` executed from its present source at `settings`."""
    stem = Path(name).stem
    recorded = out / f"{stem}.sha256"
    if not (out / f"{stem}.ipynb").is_file() or not recorded.is_file():
        return False
    return recorded.read_text().strip() == content_hash(name, settings)


def execute_all(
    out: Path,
    selected: list[str] | None = None,
    settings: Mapping[str, Settings] = DOCS,
    *,
    force: bool = False,
    run: Callable[..., Any] = execute,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Execute the tutorials (`selected`, default all) at `settings` into `out`, skipping
    those already current there unless `force`; the names executed."""
    done = []
    for name in selected or names():
        if not force and is_current(name, out, settings):
            log(f"{name}: unchanged since its last execution, skipped")
            continue
        start = time.perf_counter()
        save(run(name, settings), name, out, settings)
        log(f"{name}: executed in {time.perf_counter() - start:.0f} s")
        done.append(name)
    return done


# -- Sphinx -------------------------------------------------------------------------------


def reads(text: str, **kwargs: Any) -> Any:
    """myst-nb's reader of ``tutorials/*.py``: an executed notebook's JSON (which
    :func:`_use_executed` put in place of the source) or the jupytext percent source."""
    import jupytext
    import nbformat

    if text.lstrip().startswith("{"):
        return nbformat.reads(text, as_version=4)
    return jupytext.reads(text, fmt="py:percent")


def _use_executed(app: Any, docname: str, source: list[str]) -> None:
    """``source-read``: the executed notebook in place of tutorial `docname`'s source."""
    from sphinx.util import logging

    folder = app.config.tutorials_executed
    if not folder or not docname.startswith("tutorials/"):
        return
    name = docname.removeprefix("tutorials/") + ".py"
    if not (NOTEBOOKS / name).is_file():
        return
    out = Path(folder) if Path(folder).is_absolute() else ROOT / folder
    stem = Path(name).stem
    # Re-read the page whenever either file changes (or is still missing).
    app.env.note_dependency(str(out / f"{stem}.sha256"))
    app.env.note_dependency(str(out / f"{stem}.ipynb"))
    logger = logging.getLogger(__name__)
    if not (out / f"{stem}.ipynb").is_file():
        logger.info("tutorials: %s has no executed notebook in %s, shown unexecuted", name, out)
        return
    if not is_current(name, out):
        logger.warning(
            "tutorials: %s is stale (its source or settings changed since it ran): "
            "python docs/_ext/tutorials.py --out %s",
            out / f"{stem}.ipynb",
            folder,
            location=docname,
        )
        return
    source[0] = (out / f"{stem}.ipynb").read_text()


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("tutorials_executed", "", "env", types=[str])
    app.connect("source-read", _use_executed)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the .ipynb files")
    parser.add_argument("--settings", choices=("docs", "suite"), default="docs")
    parser.add_argument("--force", action="store_true", help="re-execute unchanged tutorials")
    parser.add_argument("names", nargs="*", help="tutorial file names (default: all)")
    args = parser.parse_args(argv)
    settings = DOCS if args.settings == "docs" else SUITE
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    start = time.perf_counter()
    done = execute_all(args.out, args.names or None, settings, force=args.force)
    seconds = time.perf_counter() - start
    print(f"tutorials: {len(done)} executed into {args.out} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
