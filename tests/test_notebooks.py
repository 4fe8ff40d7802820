"""Tutorials are executed end to end at the suite's small settings (``tutorials.SUITE``,
injected into their `parameters` cell) by the executor the docs site shares
(docs/_ext/tutorials.py)."""

import pathlib
import re
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "docs" / "_ext"))
import tutorials

# Figures each tutorial shows (image outputs): what its page on the docs site shows.
FIGURES = {
    "01_compose_an_scm.py": 0,
    "02_counterfactual_images.py": 1,
    "03_deconfounding.py": 3,
    "04_slots.py": 3,
    "05_diffusion_counterfactuals.py": 2,
    "06_counterfactual_captioning.py": 2,
    "07_audit_a_classifier.py": 4,
}


def outputs(notebook) -> str:
    return "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )


@pytest.mark.parametrize("name", tutorials.names())
def test_notebook_runs(name):
    notebook = tutorials.execute(name, tutorials.SUITE)
    text = outputs(notebook)
    images = [
        o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(images) == FIGURES[name], "a figure did not show inline"
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
        assert "trained confounded, unconfounded: 100 steps each" in text
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
