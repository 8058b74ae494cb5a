"""A sweep's results table (Markdown, CSV, JSON; deterministic) and its plots (metric against guidance, PNG)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from lavit.sweeps.config import GRID_AXES

FLOAT_FORMAT = "{:.4f}"
GUIDANCE_AXES = ("keyframe_guidance", "motion_guidance")


def build_rows(points: list[dict[str, Any]], reference: dict[str, dict[str, float]], metric_names: list[str]) -> list[dict]:
    """Rows: one per grid point (``{"id", axes..., "videos", "networks", metrics...}``), sorted by id, then the
    reference rows (``kind = "paper"``), sorted by label."""
    rows = []
    for p in sorted(points, key=lambda p: p["id"]):
        rows.append({"kind": "sweep", "id": p["id"], **{a: p.get(a) for a in GRID_AXES}, "videos": p["videos"],
                     "networks": p.get("networks", ""), **{m: p["results"].get(m) for m in metric_names}})
    for label in sorted(reference):
        rows.append({"kind": "paper", "id": label, **{a: None for a in GRID_AXES}, "videos": None, "networks": "",
                     **{m: reference[label].get(m) for m in metric_names}})
    return rows


def columns(rows: list[dict], metric_names: list[str]) -> list[str]:
    """kind, id, the axes that any row sets, videos, networks, metrics."""
    axes = [a for a in GRID_AXES if any(r[a] is not None for r in rows)]
    return ["kind", "id", *axes, "videos", "networks", *metric_names]


def _cell(value: Any, metric: bool = True) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not metric:
        return f"{value:g}"
    if isinstance(value, float):
        return FLOAT_FORMAT.format(value) if math.isfinite(value) else str(value)
    return str(value)


def write_tables(rows: list[dict], metric_names: list[str], out_dir: Path, title: str) -> dict[str, Path]:
    """``results.md``, ``results.csv``, ``results.json`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = columns(rows, metric_names)
    md = [f"# {title}", "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    md += ["| " + " | ".join(_cell(r[c], c in metric_names) for c in cols) + " |" for r in rows]
    paths = {"md": out_dir / "results.md", "csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    paths["md"].write_text("\n".join(md) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    writer.writerows([_cell(r[c], c in metric_names) for c in cols] for r in rows)
    paths["csv"].write_text(buf.getvalue())
    rounded = [{c: (float(_cell(r[c])) if isinstance(r[c], float) and math.isfinite(r[c]) else r[c]) for c in cols} for r in rows]
    paths["json"].write_text(json.dumps({"title": title, "columns": cols, "rows": rounded}, indent=2, sort_keys=True) + "\n")
    return paths


def write_plots(rows: list[dict], metric_names: list[str], out_dir: Path, title: str = "") -> list[Path]:
    """One PNG per metric (``<name>_std`` as error bars) against the first guidance axis that takes several values, one line per combination of
    the other axes; the paper's value as a dashed line. No guidance axis swept: no plots."""
    sweep = [r for r in rows if r["kind"] == "sweep"]
    x_axis = next((a for a in GUIDANCE_AXES if len({r[a] for r in sweep}) > 1), None)
    if x_axis is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    others = [a for a in GRID_AXES if a != x_axis and len({r[a] for r in sweep}) > 1]
    paths = []
    for metric in [m for m in metric_names if not m.endswith("_std")]:
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
        groups: dict[tuple, list[dict]] = {}
        for r in sweep:
            groups.setdefault(tuple(r[a] for a in others), []).append(r)
        for key in sorted(groups, key=lambda k: tuple(str(v) for v in k)):
            line = sorted((r for r in groups[key] if r[metric] is not None), key=lambda r: r[x_axis])
            label = ", ".join(f"{a}={Path(str(v)).stem if a == 'checkpoint' else v}" for a, v in zip(others, key)) or "sweep"
            std = [r.get(f"{metric}_std") for r in line]
            ax.errorbar([r[x_axis] for r in line], [r[metric] for r in line], yerr=std if None not in std else None,
                        marker="o", capsize=3, label=label)
        for r in rows:
            if r["kind"] == "paper" and r[metric] is not None:
                ax.axhline(r[metric], linestyle="--", color="gray", label=f"{r['id']} (paper)")
        ax.set_xlabel(x_axis.replace("_", " "))
        ax.set_ylabel(metric)
        if title:
            ax.set_title(title, fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{metric}_vs_{x_axis}.png"
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
        paths.append(path)
    return paths
