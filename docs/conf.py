"""Sphinx configuration of the causalvision documentation site.

Build it with ``make docs`` (warnings are errors). The tutorials in ``notebooks/`` are copied
into ``docs/tutorials/`` and rendered by myst-nb, which never executes them
(``_ext/tutorials.py``): ``make docs`` first executes them at small settings into
``docs/_build/tutorials/`` and builds with ``-D tutorials_executed=docs/_build/tutorials``, so
their pages show those executed notebooks; a build without the option (the test suite's fast
one) shows the sources unexecuted, and the suite executes them itself (tests/test_notebooks.py).
The benchmark tables of "Performance" and "Reproducing the papers" are read from
``benchmarks/results/*.json`` at build time (``_ext/cv_benchmarks.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _copy_tutorials() -> None:
    """Mirror notebooks/*.py into docs/tutorials/ (generated, git-ignored)."""
    out = DOCS / "tutorials"
    out.mkdir(exist_ok=True)
    wanted = {p.name for p in (ROOT / "notebooks").glob("[0-9]*.py")}
    for stale in out.glob("*.py"):
        if stale.name not in wanted:
            stale.unlink()
    for name in sorted(wanted):
        src, dst = ROOT / "notebooks" / name, out / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)


_copy_tutorials()

#: The packages whose ``__all__`` the API reference documents, with a one-line summary each.
API_PACKAGES = {
    "causalvision": "Top-level shortcuts",
    "causalvision.scm": "Structural causal models",
    "causalvision.graph": "Causal graphs and identification",
    "causalvision.data": "Datasets with exact ground truth",
    "causalvision.nn": "Neural modules",
    "causalvision.losses": "Losses",
    "causalvision.metrics": "Metrics and evaluators",
    "causalvision.train": "Training",
    "causalvision.audit": "Audits",
}


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def data_home(package: str, name: str) -> str:
    """The module under `package` whose source documents data `name` with a ``#:`` comment.

    Autodoc reads a constant's documentation from its module's source, so a re-exported
    constant is documented from where it is defined; `package` if no module documents it.
    """
    import sys

    from sphinx.pycode import ModuleAnalyzer

    value = getattr(sys.modules[package], name)
    for modname, module in sorted(sys.modules.items()):
        if not modname.startswith(package + ".") or getattr(module, name, None) is not value:
            continue
        try:
            if ("", name) in ModuleAnalyzer.for_module(modname).find_attr_docs():
                return modname
        except Exception:
            continue
    return package


def _api_pages() -> None:
    """One page per package listing every name of its ``__all__`` (generated, git-ignored).

    Generated from ``__all__`` at each build, so a new public name is documented (and needs a
    docstring, or the build fails) without editing the docs. The top-level package only
    re-exports, so its page links to the subpackages' entries.
    """
    import importlib
    import inspect

    for package, summary in API_PACKAGES.items():
        module = importlib.import_module(package)
        names = [n for n in module.__all__ if not inspect.ismodule(getattr(module, n))]
        if package == "causalvision":
            lines = [f"# {summary}: `{package}`", "", "```{eval-rst}", f".. automodule:: {package}"]
            lines += ["   :no-members:", "```", "", "| name | documented as |", "|---|---|"]
            for name in names:
                obj = getattr(module, name)
                home = obj.__module__.rsplit(".", 1)[0]
                lines.append(f"| `{package}.{name}` | {{py:obj}}`{home}.{name}` |")
            _write_if_changed(DOCS / "api" / "index_root.md", "\n".join([*lines, ""]))
            continue
        entries, directives = [], []
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                entries.append(name)
                directives += [f".. autoclass:: {name}", ""]
            elif callable(obj):
                entries.append(name)
                directives += [f".. autofunction:: {name}", ""]
            else:  # documented where its "#:" comment is
                home = data_home(package, name)
                entries.append(name if home == package else f"~{home[len(package) + 1 :]}.{name}")
                directives += [f".. autodata:: {home}.{name}", "   :no-value:", ""]
        lines = [
            f"# {summary}: `{package}`",
            "",
            "```{eval-rst}",
            f".. automodule:: {package}",
            "   :no-members:",
            "",
            f".. currentmodule:: {package}",
            "",
            ".. autosummary::",
            "   :nosignatures:",
            "",
            *[f"   {entry}" for entry in entries],
            "",
            *directives,
            "```",
            "",
        ]
        _write_if_changed(DOCS / "api" / f"{package.split('.')[-1]}.md", "\n".join(lines))


_api_pages()

project = "causalvision"
author = "the causalvision authors"
copyright = "the causalvision authors, Apache-2.0"
release = version = "0.1.0"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "cv_benchmarks",
    "tutorials",
]

exclude_patterns = ["_build", "conf.py", "_ext", "Thumbs.db", ".DS_Store", "**/.ipynb_checkpoints"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_theme = "furo"
html_title = "causalvision"
# Not nitpicky: without network there are no intersphinx inventories, so the ~960 external
# types in signatures (jax.Array, Mapping, numpy.ndarray, nnx.Module...) would each warn, and
# napoleon reads some properties' "Label: text" first lines as types (~25 more).
suppress_warnings = ["myst.header"]  # pages open at "##" after a prose title in places

# MyST and myst-nb: notebooks are jupytext percent-format .py files.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3
# Read through _ext/tutorials.py, which swaps in the executed notebook when there is one.
nb_custom_formats = {".py": ["tutorials.reads", {}]}
nb_execution_mode = "off"  # executed by _ext/tutorials.py (make docs) or the suite, not here
nb_output_stderr = "remove"  # progress bars and warnings of the executed tutorials
tutorials_executed = ""  # a folder of executed notebooks (make docs: -D tutorials_executed=...)

# API reference: one page per package (generated above): an autosummary table, then every
# name's autodoc entry on the same page (a stub page per name makes furo's navigation slow).
autosummary_generate = False
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = False
napoleon_use_ivar = True  # "Attributes:" as fields, not a second description of each member

_SECTION = re.compile(r"^(\s*)(Examples?)(?: \(([^)]*)\))?:{1,2}\s*$")
_CODE_SPAN = re.compile(r"(``.+?``|`[^`]*`)")


def prose_examples_as_code(lines: list[str]) -> None:
    """Render ``Example:`` sections written as plain code (no ``>>>``) as literal blocks.

    The docstrings are Google style with code examples written bare under ``Example:``;
    reStructuredText would read their indentation as definition lists. Sections whose first
    line is a ``>>>`` doctest are left to napoleon (and are run by tests/test_docs.py).
    """
    i = 0
    while i < len(lines):
        match = _SECTION.match(lines[i])
        body = i + 1
        while body < len(lines) and not lines[body].strip():
            body += 1
        if not match or body >= len(lines) or lines[body].lstrip().startswith(">>>"):
            i += 1
            continue
        indent = len(match.group(1))
        inner = len(lines[body]) - len(lines[body].lstrip())
        if inner <= indent:
            i += 1
            continue
        end = body
        while end < len(lines) and (
            not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) >= inner
        ):
            end += 1
        while end > body and not lines[end - 1].strip():
            end -= 1
        code = [("    " + line) if line.strip() else "" for line in lines[body:end]]
        lines[i:end] = [
            f"{match.group(1)}Example:",
            " " * inner + "::",
            "",
            *code,
            "",
        ]
        i += 5 + len(code)


def escape_bars(lines: list[str]) -> None:
    """Escape ``|`` outside code spans: the docstrings write ``|x|`` for absolute values,
    never a reStructuredText substitution."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        table = stripped.startswith(("+-", "+=")) or (stripped[:1] == "|" and stripped[-1:] == "|")
        if "|" in line and not table:
            parts = _CODE_SPAN.split(line)
            lines[i] = "".join(p if k % 2 else p.replace("|", "\\|") for k, p in enumerate(parts))


def _process_docstring(app, what, name, obj, options, lines) -> None:
    prose_examples_as_code(lines)
    escape_bars(lines)


def setup(app) -> None:
    # Before napoleon (priority 500), which would otherwise read the examples as prose.
    app.connect("autodoc-process-docstring", _process_docstring, priority=400)
