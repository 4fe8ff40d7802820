"""Self-contained HTML reports: a classifier audit (`write_report`) and a training run's
evaluation (`write_run_report`).

Each report is one `report.html` that a browser opens offline: PNG figures embedded as base64
`data:` URIs, inline CSS, no scripts, every text escaped. Figures are drawn on
`matplotlib.figure.Figure` objects with the Agg canvas, so the caller's pyplot backend is
left alone; they are also written beside the page as PNG files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from causalvision.data import Dataset

__all__ = ["write_report", "write_run_report"]

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f2f2f2; }
td.num { font-variant-numeric: tabular-nums; text-align: right; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
p.note { background: #f8f8f0; border-left: 4px solid #cc9; padding: 0.6em 1em; }
"""


def _png(figure: Any) -> bytes:
    """The PNG bytes of a `matplotlib.figure.Figure`, drawn with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_") or "x"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int | np.floating | np.integer):
        if isinstance(value, bool | np.bool_):
            return str(value)
        return f"{float(value):.{digits}g}"
    return str(value)


def _interval(stat: Mapping[str, Any] | None, index: int | None = None) -> str:
    """ "mean [low, high]" of a `bootstrap_mean` dict (entry `index` of a vector one)."""
    if stat is None:
        return "—"
    pick = (lambda v: v) if index is None else (lambda v: v[index])
    return f"{_fmt(pick(stat['mean']))} [{_fmt(pick(stat['low']))}, {_fmt(pick(stat['high']))}]"


def _gray(images: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Images `(H, W, C)` on [0, 255] as an `imshow` array and its options."""
    image = np.clip(np.asarray(images, np.float32) / 255.0, 0.0, 1.0)
    if image.shape[-1] == 1:
        return image[..., 0], {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    return image, {}


def _grid_figure(label: str, row: Mapping[str, Any], images: Mapping[str, Any]) -> Any:
    """Most affected units of one intervention: factual | model cf | exact cf rows."""
    from matplotlib.figure import Figure

    affected = row["model"]["most_affected"]
    units = list(affected["units"])
    factual = np.asarray(images["factual"])
    rows = [("factual", factual), ("model cf", np.asarray(images[label]["model"]))]
    if "exact" in images[label]:
        rows.append(("exact cf", np.asarray(images[label]["exact"])))
    figure = Figure(figsize=(1.0 + 0.9 * len(units), 0.35 + 0.95 * len(rows)))
    axes = figure.subplots(len(rows), len(units), squeeze=False)
    for r, (name, stack) in enumerate(rows):
        for c, unit in enumerate(units):
            axis = axes[r, c]
            image, options = _gray(stack[unit])
            axis.imshow(image, **options)
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(
                    f"#{unit}: {affected['factual_class'][c]}→"
                    f"{affected['counterfactual_class'][c]}\nTV {affected['tv_change'][c]:.2f}",
                    fontsize=7,
                )
            if c == 0:
                axis.set_ylabel(name, fontsize=8)
    figure.suptitle(f"{label}: most affected units (class factual→model cf)", fontsize=9)
    figure.subplots_adjust(left=0.08, right=0.99, bottom=0.02, top=0.78, wspace=0.05)
    return figure


def _effect_figure(label: str, row: Mapping[str, Any], class_names: Sequence[str]) -> Any:
    """Flip rate and per-class ACE, model vs exact, with interval error bars."""
    from matplotlib.figure import Figure

    sources = [(name, row[name]) for name in ("model", "exact") if row.get(name) is not None]
    figure = Figure(figsize=(3.0 + 0.45 * len(class_names), 3.0))
    flip_axis, ace_axis = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 4]})
    width = 0.8 / len(sources)
    classes = np.arange(len(class_names))
    for s, (name, effects) in enumerate(sources):
        flip = effects["flip_rate"]
        flip_axis.bar(
            s,
            flip["mean"],
            yerr=[[flip["mean"] - flip["low"]], [flip["high"] - flip["mean"]]],
            capsize=3,
            label=name,
        )
        ace = {k: np.asarray(v, np.float64) for k, v in effects["ace"].items()}
        ace_axis.bar(
            classes + (s - (len(sources) - 1) / 2) * width,
            ace["mean"],
            width,
            yerr=np.stack([ace["mean"] - ace["low"], ace["high"] - ace["mean"]]),
            capsize=2,
            label=name,
        )
    flip_axis.set_xticks(range(len(sources)), [name for name, _ in sources], fontsize=7)
    flip_axis.set_ylim(0.0, 1.0)
    flip_axis.set_title("flip rate", fontsize=9)
    ace_axis.axhline(0.0, color="k", linewidth=0.6)
    ace_axis.set_xticks(classes, class_names, fontsize=7)
    ace_axis.set_title("ACE on P(class)", fontsize=9)
    ace_axis.legend(fontsize=7)
    figure.suptitle(label, fontsize=9)
    figure.tight_layout()
    return figure


def _map_figure(label: str, effect: Sequence[Sequence[float]], factual: np.ndarray) -> Any:
    """An effect map as a heat map beside the mean factual image."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 2.9))
    image_axis, map_axis = figure.subplots(1, 2)
    image, options = _gray(factual.mean(axis=0))
    image_axis.imshow(image, **options)
    image_axis.set_title("mean factual image", fontsize=8)
    shown = map_axis.imshow(np.asarray(effect, np.float64), cmap="magma", vmin=0.0)
    map_axis.set_title("mean TV change, block → its cf", fontsize=8)
    figure.colorbar(shown, ax=map_axis, fraction=0.046)
    for axis in (image_axis, map_axis):
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(label, fontsize=9)
    figure.tight_layout()
    return figure


def _curve_figure(curve: Mapping[str, Any], class_names: Sequence[str]) -> Any:
    """Flip rate and per-class ACE against the intervened value, with interval bands."""
    from matplotlib.figure import Figure

    values = np.asarray(curve["values"], np.float64)
    figure = Figure(figsize=(8.0, 3.0))
    flip_axis, ace_axis = figure.subplots(1, 2)
    flip = {k: np.array([f[k] for f in curve["flip_rate"]]) for k in ("mean", "low", "high")}
    flip_axis.plot(values, flip["mean"], marker="o", markersize=3)
    flip_axis.fill_between(values, flip["low"], flip["high"], alpha=0.3)
    flip_axis.set_ylim(0.0, 1.0)
    flip_axis.set_title("flip rate", fontsize=9)
    ace = {k: np.array([a[k] for a in curve["ace"]]) for k in ("mean", "low", "high")}
    for k, name in enumerate(class_names):
        (line,) = ace_axis.plot(values, ace["mean"][:, k], label=name, linewidth=1)
        ace_axis.fill_between(
            values, ace["low"][:, k], ace["high"][:, k], alpha=0.15, color=line.get_color()
        )
    ace_axis.axhline(0.0, color="k", linewidth=0.6)
    ace_axis.set_title("ACE on P(class)", fontsize=9)
    ace_axis.legend(fontsize=6, ncol=2)
    for axis in (flip_axis, ace_axis):
        axis.set_xlabel(f"do({curve['node']} = v)", fontsize=8)
    figure.tight_layout()
    return figure


def _class_names(record: Mapping[str, Any], dataset: Dataset | None) -> list[str]:
    classes = int(record["classes"])
    accuracy = record.get("factual_accuracy")
    if accuracy is not None:
        return [f"{accuracy['attribute']}={k}" for k in range(classes)]
    if dataset is not None:
        for spec in dataset.attribute_specs:
            if spec.categorical and spec.num_classes == classes:
                return [f"{spec.name}={k}?" for k in range(classes)]
    return [f"class {k}" for k in range(classes)]


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if math.isfinite(value) else None
    return value


def _figure_html(name: str, data: bytes, caption: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(name)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _summary_row(row: Mapping[str, Any]) -> list[str]:
    """The summary table's cells (unescaped text) of one intervention."""
    ace_mean = np.asarray(row["model"]["ace"]["mean"], np.float64)
    k = int(np.argmax(np.abs(ace_mean)))
    direct = row.get("direct")
    mediated = row.get("mediated")
    error = row.get("generator_error")
    exact = row.get("exact")
    return [
        row["label"],
        _interval(row["model"]["flip_rate"]),
        "—" if exact is None else _interval(exact["flip_rate"]),
        f"class {k}: {_interval(row['model']['ace'], k)}",
        _interval(row["model"]["ace_factual_class"]),
        "—" if direct is None else _interval(direct["ace"], k),
        "—" if mediated is None else _interval(mediated["ace"], k),
        "—"
        if error is None
        else f"flip {_fmt(error['flip_rate'])}, ACE_{k} {_fmt(error['ace'][k])}",
        "—" if error is None else _fmt(error["decision_agreement"]),
    ]


SUMMARY_COLUMNS = (
    "intervention",
    "flip rate [interval]",
    "exact flip rate",
    "largest |ACE| (model)",
    "ACE on each unit's factual class",
    "direct part",
    "mediated part",
    "generator error (model − exact)",
    "decision agreement",
)


def write_report(
    record: Mapping[str, Any],
    out_dir: str | pathlib.Path,
    *,
    title: str,
    curves: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Writes an audit's report.html, report.json and PNG figures into `out_dir`.

    Args:
      record: what `audit_classifier` returned, its "images" included (factual `(N, H, W, C)`
        and per intervention label "model" (and "exact") counterfactuals, on [0, 255]).
      out_dir: created if needed.
      title: the page's heading.
      curves: `effect_curve` results (one or a list), drawn with interval bands.
      dataset: names the classes after a categorical attribute with as many classes.

    Returns:
      What report.json holds: every number of `record` but the images, "curves", "title",
      and "files" (the written file names, relative to `out_dir`).
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(curves, Mapping):
        curves = [curves]
    curves = list(curves or [])
    images = record.get("images")
    if images is None or "factual" not in images:
        raise ValueError("record: expected audit_classifier's record with its 'images'")
    class_names = _class_names(record, dataset)
    figures: dict[str, list[str]] = {"grids": [], "effects": [], "maps": [], "curves": []}
    files: list[str] = []

    def add(section: str, name: str, figure: Any, caption: str) -> None:
        data = _png(figure)
        (out / name).write_bytes(data)
        files.append(name)
        figures[section].append(_figure_html(name, data, caption))

    factual = np.asarray(images["factual"])
    for index, row in enumerate(record["interventions"]):
        label = row["label"]
        stem = f"{index:02d}_{_slug(label)}"
        add(
            "grids",
            f"grid_{stem}.png",
            _grid_figure(label, row, images),
            f"{label}: the {len(row['model']['most_affected']['units'])} units whose class "
            "distribution changed most (total variation) under the model's counterfactual",
        )
        add(
            "effects",
            f"effects_{stem}.png",
            _effect_figure(label, row, class_names),
            f"{label}: flip rate and ACE per class, bars at the mean, whiskers the interval",
        )
        if row.get("effect_map") is not None:
            add(
                "maps",
                f"effect_map_{stem}.png",
                _map_figure(label, row["effect_map"], factual),
                f"{label}: which blocks carry the effect",
            )
    for index, curve in enumerate(curves):
        add(
            "curves",
            f"curve_{index:02d}_{_slug(str(curve['node']))}.png",
            _curve_figure(curve, class_names),
            f"do({curve['node']} = v): flip rate and ACE per class, bands the interval",
        )

    report = _json_ready({k: v for k, v in record.items() if k != "images"})
    report.update(title=title, curves=_json_ready(curves))
    files += ["report.json", "report.html"]
    report["files"] = files
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))

    level = float(record.get("level", 0.95))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in SUMMARY_COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in _summary_row(row)) + "</tr>"
        for row in record["interventions"]
    )
    accuracy = record.get("factual_accuracy")
    facts = (
        f"{record['units']} units, {record['classes']} classes"
        + (
            ""
            if accuracy is None
            else f"; factual accuracy on {accuracy['attribute']}: {_fmt(accuracy['accuracy'])}"
        )
        + "."
    )
    body = [
        f"<p>{html.escape(facts)}</p>",
        '<h2>Summary</h2><table id="summary"><thead><tr>'
        f"{head}</tr></thead><tbody>{rows}</tbody></table>",
        '<p class="note">'
        + html.escape(
            f"How to read this: for each intervention do(A = a), every unit's factual image x "
            f"gets a counterfactual x* (the deep SCM's, and the generator's exact one where it "
            f"exists). The flip rate is the share of units whose predicted class changes; "
            f"ACE_k is the mean change of P(class k). The direct part holds the mediators "
            f"(attributes downstream of A) at their factual values; the mediated part is the "
            f"rest. Generator error = model − exact: effect that comes from the deep SCM's "
            f"mistakes, not from the classifier. Decision agreement: the share of units where "
            f"the classifier decides the same on the model's and the exact counterfactual. "
            f"Intervals are {level:.0%} percentile bootstrap intervals over units "
            f"({record.get('num_bootstrap', '?')} resamples of the {record['units']} units "
            f"with replacement), level {level:g}."
        )
        + "</p>",
    ]
    for section, heading in (
        ("grids", "Counterfactual grids"),
        ("effects", "Effects"),
        ("maps", "Effect maps"),
        ("curves", "Effect curves"),
    ):
        if figures[section]:
            body.append(f"<h2>{html.escape(heading)}</h2>")
            body.extend(figures[section])
    (out / "report.html").write_text(_page(title, body), encoding="utf-8")
    return report


def write_run_report(
    run_dir: str | pathlib.Path,
    out: str | pathlib.Path | None = None,
    *,
    title: str | None = None,
) -> pathlib.Path:
    """One self-contained HTML page of an evaluated run: its metrics and its PNG figures.

    Args:
      run_dir: an evaluation's output directory (`causalvision evaluate --out`): its
        `metrics.json` and every `*.png` in it (counterfactual grids first) are shown.
      out: the page to write (default `run_dir/report.html`).
      title: the page's heading (default: the run directory).

    Returns the page's path.
    """
    run_dir = pathlib.Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise ValueError(
            f"run: {str(run_dir)!r} has no metrics.json; run `causalvision evaluate` first"
        )
    try:
        metrics = json.loads(metrics_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"run: {str(metrics_path)!r} is not valid JSON ({error})") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"run: {str(metrics_path)!r}: expected a JSON object")
    out = run_dir / "report.html" if out is None else pathlib.Path(out)
    title = title or f"Evaluation of {run_dir}"
    rows = []
    for name, value in metrics.items():
        text = _fmt(value, 4) if isinstance(value, float | int) else json.dumps(value)
        rows.append(
            f'<tr><td>{html.escape(str(name))}</td><td class="num">{html.escape(text)}</td></tr>'
        )
    pngs = sorted(run_dir.glob("*.png"), key=lambda p: (not p.name.startswith("counter"), p.name))
    body = [
        '<p class="note">'
        + html.escape(
            "Counterfactual grids put the model's counterfactual images beside the "
            "generator's exact ones; the metrics score the model against that exact truth "
            "(see docs/deep_scm.md for their definitions)."
        )
        + "</p>",
        "<h2>Figures</h2>",
        *(_figure_html(p.name, p.read_bytes(), p.stem.replace("_", " ")) for p in pngs),
        '<h2>Metrics</h2><table id="metrics"><thead><tr><th>metric</th><th>value</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_page(title, body), encoding="utf-8")
    return out
