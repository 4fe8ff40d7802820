"""Tutorials are executed end to end (small settings injected into their `parameters` cell)."""

import os
import pathlib
import re

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
    "05_diffusion_counterfactuals.py": (
        # The tiny preset's own step count (as for 02: programs shared through the cache).
        "import tempfile\npreset = 'morpho_tiny'\nnum_steps = 4\nnum_examples = 4\n"
        "workdir = tempfile.mkdtemp()\n"
    ),
    "06_counterfactual_captioning.py": (
        "import tempfile\npreset = 'tiny'\nnum_steps = 4\nft_steps = 2\nnum_eval = 8\nbeam = 2\n"
        "workdir = tempfile.mkdtemp()\n"
    ),
    "07_audit_a_classifier.py": (
        # The tiny presets, as tests/test_audit_worked.py trains them (programs shared through
        # the compilation cache).
        "import tempfile\nsuffix = '_tiny'\nunits = 32\nnum_bootstrap = 200\n"
        "workdir = tempfile.mkdtemp()\n"
    ),
    "03_deconfounding.py": (
        "import tempfile\nnum_steps = 30\ntrain_size = 256\ntest_size = 64\nseed = 0\n"
        "workdir = tempfile.mkdtemp()\n"
    ),
}

# Kernels with XLA's backend optimisations off: their many small programs compile faster, and
# no other test compiles the same programs (05 alone trains the diffusion's morpho_tiny preset),
# so no program from the session's compilation cache is lost.
FAST_COMPILE = {"05_diffusion_counterfactuals.py"}


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
    env = dict(os.environ)
    if name in FAST_COMPILE:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=600).execute(
        cwd=str(NOTEBOOKS), env=env
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
    if name == "05_diffusion_counterfactuals.py":
        assert "trained 4 steps" in text
        assert "adjacency: [[0, 1], [0, 0]]" in text  # thickness -> intensity, from the graph
        assert "'x': (4, 32, 32, 1)" in text and "'pixel': (4, 32, 32, 1)" in text
        # The abducted pixel residual makes the null intervention exact up to float error.
        change = float(re.search(r"do\(thickness = factual\): max \|Δ\| = (\S+)", text)[1])
        assert change < 0.01
        for do in ("thickness=4.5", "intensity=110"):
            found = re.search(rf"ground-truth error under do\({do}\): L1 (\S+) \(0-255\)", text)
            assert 0 < float(found[1]) < 255
        assert "without a key: counterfactual: nodes ['image'] abduct" in text
        for abduction in ("invert", "renoise"):
            errors = re.findall(rf"{abduction}, strength (\S+): L1 to the truth (\S+)", text)
            assert [s for s, _ in errors] == ["0.25", "0.5", "1"]
            assert all(0 < float(e) < 255 for _, e in errors)
    if name == "07_audit_a_classifier.py":
        assert "trained confounded, unconfounded: 600 steps each" in text
        for name_ in ("confounded", "unconfounded"):
            assert re.search(rf"{name_}: accuracy on unconfounded digits [01]\.\d{{3}}", text)
            assert re.search(rf"{name_}: flip rate over intensity( \d\.\d\d,?){{4}}", text)
            assert re.search(rf"{name_}: effect map of do\(intensity=90\), largest block", text)
        assert "do(intensity=90): flip-rate intervals overlap:" in text
    if name == "06_counterfactual_captioning.py":
        assert "trained the baseline 4 steps" in text and "fine-tuned with TE 2 steps" in text
        found = re.search(r"naming a star: (\d+) of 32; of those, (\d+)% also name", text)
        assert found and int(found[1]) > 0 and 0 <= int(found[2]) <= 100
        for model in ("baseline", "+TE"):
            found = re.search(
                rf"{re.escape(model)}: CIDEr-D (\S+); CHAIR_i factual (\S+)%, masked (\S+)%, "
                r"removed (\S+)%",
                text,
            )
            assert found, model
            assert all(0 <= float(v) <= 100 for v in found.groups()[1:])
        assert re.search(r"masked, star hidden, triangle visible: star still named in \d+ of", text)
        assert re.search(r"\+TE: CIDEr-D +\S+ \| CHAIR_i masked +\S+% removed", text)
