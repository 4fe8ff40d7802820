"""Tutorials are executed end to end (small settings injected into their `parameters` cell)."""

import pathlib

import jupytext
import nbclient
import pytest

NOTEBOOKS = pathlib.Path(__file__).parents[1] / "notebooks"
SMALL = {
    "01_compose_an_scm.py": "num_samples = 20_000\nfit_steps = 300\nseed = 1\n",
    "02_counterfactual_images.py": (
        # The tiny preset's own step count: the same programs as tests/test_deep_scm.py's
        # run, which this kernel then loads from the session's compilation cache.
        "import tempfile\npreset = 'tiny'\nnum_steps = 6\nnum_examples = 4\n"
        "workdir = tempfile.mkdtemp()\n"
    ),
    "04_slots.py": (
        "import tempfile\npreset = 'tiny'\nnum_steps = 2\nnum_examples = 8\n"
        "workdir = tempfile.mkdtemp()\n"
    ),
    "03_deconfounding.py": (
        "import tempfile\nnum_steps = 30\ntrain_size = 256\ntest_size = 64\nseed = 0\n"
        "workdir = tempfile.mkdtemp()\n"
    ),
}


def outputs(notebook) -> str:
    return "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.py")))
def test_notebook_runs(name):
    notebook = jupytext.read(NOTEBOOKS / name)
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1, "each tutorial has exactly one `parameters` cell"
    parameters[0].source = SMALL[name]
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=600).execute(
        cwd=str(NOTEBOOKS)
    )
    text = outputs(notebook)
    if name == "01_compose_an_scm.py":
        assert "Joe's score had he doubled his homework: 1.90" in text
        assert "strategy: frontdoor | set: ['tar']" in text
        assert "NDE = 0.700  NIE = 0.200  TE = 0.900" in text
    if name == "02_counterfactual_images.py":
        assert "trained 6 steps" in text
        assert "composition L1 after 1 and 2 null cycles" in text
        assert "ground-truth error under do(thickness=4.5): L1" in text
    if name == "03_deconfounding.py":
        assert "trained ERM and the adjusted model, 30 steps each" in text
        assert "ERM: mean accuracy" in text and "adjusted: mean accuracy" in text
        assert "prediction changed by do(background)" in text
    if name == "04_slots.py":
        assert "trained 2 steps" in text and "FG-ARI" in text
        assert "pixels changed:" in text
