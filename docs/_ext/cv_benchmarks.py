"""Tables read from ``benchmarks/results/*.json`` at build time, so the pages never go stale.

Directives (MyST: ```` ```{benchmark} NAME ```` ... ):

* ``benchmark NAME`` — one benchmark's command, machine, goals and (option ``:rows:``) its
  rows or summary table, and its chart if it has one.
* ``benchmark-all`` — every ``benchmarks/results/*.json``, one section each, with rows.

A result file that is missing or malformed is a build warning (an error under ``-W``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

MAX_ROWS = 40
MAX_COLUMNS = 10


def results_dir(srcdir: str | Path) -> Path:
    return Path(srcdir).resolve().parent / "benchmarks" / "results"


def fmt(value: Any) -> str:
    """A compact text form: floats to four significant digits, containers as JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(_round(value), ensure_ascii=False, separators=(", ", ": "))
    return str(value)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v) for v in value]
    return value


def table(header: list[str], rows: list[list[str]], classes: tuple[str, ...] = ()) -> nodes.table:
    tab = nodes.table(classes=["cv-benchmark", *classes])
    group = nodes.tgroup(cols=len(header))
    tab += group
    for _ in header:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    head += _row(header)
    body = nodes.tbody()
    group += body
    for row in rows:
        body += _row(row)
    return tab


def _row(cells: list[str]) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += nodes.paragraph(text=cell)
        row += entry
    return row


def machine_text(machine: Any) -> str:
    if not isinstance(machine, dict):
        return fmt(machine)
    parts = []
    kind = machine.get("device_kind") or machine.get("jax_platforms")
    if kind:
        parts.append(str(kind))
    if "cpu_count" in machine:
        parts.append(f"{machine['cpu_count']} CPU cores")
    if machine.get("device_memory_bytes"):
        parts.append(f"{machine['device_memory_bytes'] / 2**30:.0f} GiB device memory")
    platform = machine.get("platform") or machine.get("os")
    if platform:
        parts.append(str(platform))
    versions = machine.get("versions") or {}
    if versions:
        parts.append(", ".join(f"{k} {v}" for k, v in versions.items()))
    return "; ".join(parts)


def goals_table(goals: list[dict[str, Any]]) -> nodes.table:
    marks = {True: "met", False: "not met", None: "—"}
    rows = [
        [str(g.get("goal", "")), fmt(g.get("value")), marks.get(g.get("met"), "—")] for g in goals
    ]
    return table(["goal", "measured", "status"], rows)


def rows_table(rows: list[dict[str, Any]]) -> nodes.table | None:
    """The scalar columns of a list of dicts (at most MAX_COLUMNS, first seen first)."""
    columns: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key not in columns and (value is None or isinstance(value, str | int | float)):
                columns.append(key)
    columns = [c for c in columns if not c.endswith("times_s")][:MAX_COLUMNS]
    if not columns:
        return None
    body = [[fmt(row.get(c)) for c in columns] for row in rows[:MAX_ROWS]]
    return table(columns, body)


def summary_table(summary: dict[str, Any]) -> nodes.table | None:
    """``{method: {metric: {"mean", "std"} | number}}`` as methods x metrics."""
    if not all(isinstance(v, dict) for v in summary.values()):
        return None
    metrics: list[str] = []
    for per in summary.values():
        metrics += [m for m in per if m not in metrics]
    metrics = metrics[:MAX_COLUMNS]

    def cell(v: Any) -> str:
        if isinstance(v, dict) and "mean" in v:
            std = v.get("std")
            return fmt(v["mean"]) + (f" ± {fmt(std)}" if isinstance(std, float) else "")
        return fmt(v)

    body = [[name] + [cell(per.get(m)) for m in metrics] for name, per in summary.items()]
    return table(["method", *metrics], body)


class BenchmarkDirective(SphinxDirective):
    required_arguments = 1
    option_spec = {"rows": directives.flag, "no-chart": directives.flag}  # noqa: RUF012

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        path = results_dir(self.env.srcdir) / f"{name}.json"
        self.env.note_dependency(str(path))
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            logger.warning(
                f"benchmark {name}: cannot read {path}: {error}", location=self.get_location()
            )
            return []
        return render(
            self, name, result, rows="rows" in self.options, chart="no-chart" not in self.options
        )


class AllBenchmarksDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for path in sorted(results_dir(self.env.srcdir).glob("*.json")):
            self.env.note_dependency(str(path))
            try:
                result = json.loads(path.read_text())
            except ValueError as error:
                logger.warning(f"benchmark {path.name}: {error}", location=self.get_location())
                continue
            section = nodes.section(ids=[f"benchmark-{path.stem.replace('_', '-')}"])
            section += nodes.title(text=path.stem)
            section += render(self, path.stem, result, rows=True, chart=True)
            out.append(section)
        return out


def render(
    directive: SphinxDirective, name: str, result: dict[str, Any], *, rows: bool, chart: bool
) -> list[nodes.Node]:
    out: list[nodes.Node] = []
    fields = nodes.field_list()
    for label, text in (
        ("file", f"benchmarks/results/{name}.json"),
        ("command", result.get("command", "—")),
        ("machine", machine_text(result.get("machine"))),
    ):
        field = nodes.field()
        field += nodes.field_name(text=label)
        body = nodes.field_body()
        para = nodes.paragraph()
        para += nodes.literal(text=text) if label != "machine" else nodes.Text(text)
        body += para
        field += body
        fields += field
    out.append(fields)
    goals = result.get("goals")
    if isinstance(goals, list) and goals:
        out.append(goals_table(goals))
    elif not rows:
        out.append(nodes.paragraph(text="No goals recorded; the measurements follow."))
        rows = True
    if rows:
        extra = None
        if isinstance(result.get("rows"), list) and result["rows"]:
            extra = rows_table(result["rows"])
        elif isinstance(result.get("summary"), dict):
            extra = summary_table(result["summary"])
        if extra is not None:
            out.append(extra)
    if chart and isinstance(result.get("chart"), str):
        # Charts live in benchmarks/results/; Sphinx's image collector copies them.
        image = nodes.image(uri="/../" + result["chart"], alt=f"{name} chart")
        image["width"] = "100%"
        out.append(image)
    return out


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("benchmark", BenchmarkDirective)
    app.add_directive("benchmark-all", AllBenchmarksDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
