"""The audit report and its command: a self-contained page that a headless browser renders
without errors, the `audit` command's numbers equal to `audit_classifier`'s, bad input refused
in one line, and the `report` page of an evaluated run."""

import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from causalvision.audit import (
    as_classifier,
    audit_classifier,
    effect_curve,
    exact_counterfactuals,
    held_out_examples,
    load_deep_scm,
    write_report,
    write_run_report,
)
from causalvision.audit.report import _json_ready
from causalvision.cli import main as cli_main
from causalvision.data import GeneratedSource, get_dataset, stack_examples
from causalvision.train import load_config, train_and_evaluate

ROOT = pathlib.Path(__file__).parent.parent
VAE = ROOT / "experiments" / "morpho_vae.py"
DATASET = get_dataset("morpho_digits")
INTERVENTIONS = [{"intensity": 200.0}, {"thickness": 4.0}, {"thickness": 1.5, "intensity": 90.0}]
# A planted classifier: P(class 1) rises with the measured stroke intensity.
CLASSIFIER = """
import numpy as np
from causalvision.data import get_dataset

DATASET = get_dataset("morpho_digits")


def predict(images):
    z = (np.asarray(DATASET.measure(images)["intensity"], np.float64) - 160.0) / 20.0
    p = 1.0 / (1.0 + np.exp(-z))
    return np.stack([1.0 - p, p], axis=1)


def one_column(images):
    return np.ones((len(images), 1))
"""


def _module(tmp_path: pathlib.Path):
    path = tmp_path / "clf.py"
    path.write_text(CLASSIFIER)
    spec = importlib.util.spec_from_file_location("clf_for_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A record of the exact counterfactuals of 16 digits, its curve and the planted model."""
    _, module = _module(tmp_path_factory.mktemp("clf"))
    source = GeneratedSource(DATASET, 16, seed=5)
    examples = stack_examples([source[i] for i in range(16)])
    examples["image"] = examples["image"].astype(np.float32)
    classifier = as_classifier(module.predict)
    model = exact_counterfactuals(DATASET)
    record = audit_classifier(
        model,
        DATASET,
        examples,
        classifier,
        INTERVENTIONS,
        key=jax.random.key(0),
        num_bootstrap=100,
        patch=8,
    )
    curve = effect_curve(
        model,
        DATASET,
        examples,
        classifier,
        "intensity",
        [80.0, 160.0, 240.0],
        key=jax.random.key(1),
        num_bootstrap=100,
    )
    return record, curve


def _render(driver, page: pathlib.Path, screenshot: pathlib.Path) -> dict:
    """Opens `page` in `driver`; checks the console and every image; returns counts of the
    page's parts."""
    driver.get(page.resolve().as_uri())
    severe = [m for m in driver.get_log("browser") if m["level"] == "SEVERE"]
    assert not severe, severe
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);"
    )
    assert images and all(done and width > 0 for done, width in images), images
    counts = driver.execute_script(
        "return {summary: document.querySelectorAll('#summary tbody tr').length,"
        " metrics: document.querySelectorAll('#metrics tbody tr').length,"
        " images: document.images.length,"
        " external: document.querySelectorAll('script, link, [src^=http]').length};"
    )
    assert driver.save_screenshot(str(screenshot))
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    return counts


def test_the_report_renders_in_a_headless_browser(audited, tmp_path, browser):
    record, curve = audited
    report = write_report(record, tmp_path / "out", title="Audit <planted> & co", curves=curve)
    counts = _render(browser, tmp_path / "out" / "report.html", tmp_path / "screen.png")
    assert counts["summary"] == len(INTERVENTIONS)
    assert counts["external"] == 0
    # Per intervention a grid, an effect plot and an effect map; one curve.
    assert counts["images"] == 3 * len(INTERVENTIONS) + 1
    for name in report["files"]:
        assert (tmp_path / "out" / name).stat().st_size > 0
    text = (tmp_path / "out" / "report.html").read_text()
    assert "Audit &lt;planted&gt; &amp; co" in text and "<planted>" not in text
    assert "percentile bootstrap" in text


def test_report_json_holds_every_number_but_no_images(audited, tmp_path):
    record, curve = audited
    report = write_report(record, tmp_path, title="t", curves=[curve], dataset=DATASET)
    stored = json.loads((tmp_path / "report.json").read_text())
    assert stored == report
    assert "images" not in stored
    assert stored["interventions"] == json.loads(json.dumps(record["interventions"]))
    assert stored["curves"] == [curve]
    row = stored["interventions"][0]  # do(intensity=200) on the exact truth: no error
    assert row["generator_error"]["flip_rate"] == 0.0
    assert row["generator_error"]["decision_agreement"] == 1.0
    assert row["model"]["ace"]["mean"][1] > 0.0  # brighter strokes: more class 1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_vae")
    train_and_evaluate(load_config(f"{VAE}:tiny"), workdir)
    return workdir


def test_cli_audit_matches_audit_classifier(tiny_run, tmp_path, capsys):
    path, module = _module(tmp_path)
    out = tmp_path / "report"
    status = cli_main(
        [
            "audit", "--scm", str(tiny_run), "--classifier", f"{path}:predict",
            "--do", "intensity=200", "--do", "thickness=4", "--out", str(out),
            "--num", "8", "--seed", "3", "--bootstrap", "50", "--patch", "16",
            "--curve", "intensity=100:200:2",
        ]
    )  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[-1] == f"wrote {out / 'report.html'}"
    assert any("do(thickness=4)" in line for line in lines)
    config, _, scm = load_deep_scm(tiny_run)
    record = audit_classifier(
        scm,
        DATASET,
        held_out_examples(config, 8),
        as_classifier(module.predict),
        [{"intensity": 200.0}, {"thickness": 4.0}],
        key=jax.random.key(3),
        num_bootstrap=50,
        patch=16,
    )
    stored = json.loads((out / "report.json").read_text())
    expected = _json_ready({k: v for k, v in record.items() if k != "images"})
    assert {k: stored[k] for k in expected} == json.loads(json.dumps(expected))
    assert stored["curves"][0]["values"] == [100.0, 200.0]
    assert (out / "report.html").stat().st_size > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--do": "color=3"}, "--do: expected NODE=VALUE with NODE in"),
        ({"--do": "intensity=400"}, "--do"),
        ({"--scm": "no/such/run"}, "--scm: 'no/such/run' holds no training run"),
        ({"--classifier": "one_column"}, "classifier: expected class probabilities of shape"),
        ({"--classifier": "absent"}, "--classifier: cannot load"),
        ({"--curve": "thickness=1:9:0"}, "--curve"),
    ],
    ids=["unknown-node", "out-of-support", "missing-run", "output-shape", "no-function", "curve"],
)
def test_cli_audit_refuses_bad_input_in_one_line(tiny_run, tmp_path, capsys, change, message):
    path, _ = _module(tmp_path)
    options = {"--scm": str(tiny_run), "--classifier": "predict", "--do": "intensity=200"}
    options.update(change)
    options["--classifier"] = f"{path}:{options['--classifier']}"
    argv = ["audit", "--out", str(tmp_path / "out"), "--num", "4"]
    for name, value in options.items():
        argv += [name, value]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("causalvision: error: "), err
    assert message in err[0]
    assert not (tmp_path / "out" / "report.html").exists()


def test_run_report_shows_metrics_and_grids(audited, tmp_path, capsys, browser):
    record, _ = audited
    write_report(record, tmp_path / "audit", title="t")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("grid_00_do_intensity=200.png", "effects_00_do_intensity=200.png"):
        shutil.copy(tmp_path / "audit" / name, run / name.replace("grid", "counterfactuals"))
    metrics = {"run": "runs/demo/deep_scm", "effectiveness/intensity_mae": 7.5, "n": 3}
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert cli_main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'report.html'}"
    counts = _render(browser, run / "report.html", tmp_path / "screen.png")
    assert counts == {"summary": 0, "metrics": 3, "images": 2, "external": 0}
    with pytest.raises(ValueError, match=r"no metrics\.json"):
        write_run_report(tmp_path / "audit")
    assert cli_main(["report", str(tmp_path / "nowhere")]) == 2


def test_audit_speed_benchmark_audits_a_run_directory_classifier(tiny_run, tmp_path):
    """The speed benchmark on the tiny runs: an attribute-predictor run as the classifier
    (its digit head), read through `as_classifier`, checked against calling it directly."""
    oracle = tmp_path / "oracle"
    train_and_evaluate(load_config(f"{ROOT / 'experiments' / 'morpho_oracle.py'}:tiny"), oracle)
    classifier = as_classifier(str(oracle), attribute="digit")
    config, _, _ = load_deep_scm(tiny_run)
    p = classifier(held_out_examples(config, 4)["image"])
    assert p.shape == (4, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    output = tmp_path / "speed.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "audit_speed.py"), "--scm",
               str(tiny_run), "--classifier", str(oracle), "--num", "8", "--bootstrap", "10",
               "--repeats", "1", "--patch", "16", "--output", str(output)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    for stage in ("counterfactuals", "audit", "effect map"):
        row = result["timings"][stage]
        assert row["units_per_s_warm"] == pytest.approx(8 / row["warm_s"])
    (goal,) = result["goals"]
    assert goal["met"] and goal["value"]["units_per_s_warm"] > 0
    bad = [sys.executable, str(ROOT / "benchmarks" / "audit_speed.py"), "--scm", str(tmp_path)]
    done = subprocess.run(bad, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"audit_speed: error: --scm: {tmp_path} holds no run (no config.json); run `make demo`"
    )
