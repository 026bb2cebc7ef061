"""Reports of an output directory: Markdown/CSV tables, verdicts and PNG plots.

:func:`write_report` loads every finished record of ``<output_dir>/runs/``, asks the protocol's
``summarize`` for one row per grid cell (mean ± std over seeds, n, achieved params/FLOPs/speed-up
next to the target, fairness setup label) and its verdicts, and writes into
``<output_dir>/report/``:

* ``summary.md`` — the table, the verdicts, grid completeness and the environment;
* ``summary.csv`` — the same rows, raw numbers (mean and std in separate columns);
* ``summary.json`` — ``Summary.to_dict()``;
* ``accuracy_vs_epoch.png`` — test accuracy per retraining epoch, mean over seeds, per cell;
* ``jsv_vs_epoch.png`` — mean JSV per epoch (only when runs recorded ``jsv_mean``);
* ``accuracy_vs_speedup.png`` — the compared accuracy (the config's ``metric``) against the
  achieved MAC reduction, or ``accuracy_per_cell.png`` when every run has the same reduction.

A report of a grid that is not finished says so, in its text and in every plot's title (with
the cells that have no run yet), and the report names what it found wrong in the folder: a
damaged ``record.json`` (that run is left out), a missing or unreadable ``config.yaml``,
``grid.json``, ``spec.json``, ``environment.json`` or ``history.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tfprune.configs.base import load_yaml
from tfprune.configs.protocol import CONFIG_FILE, ProtocolConfig
from tfprune.errors import (
    ConfigError,
    InvalidArgumentError,
    NoFinishedRunsError,
    TfpruneError,
    did_you_mean,
)
from tfprune.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from tfprune.protocols.base import MIN_TESTED_SEEDS
from tfprune.protocols.grids import PROTOCOLS
from tfprune.protocols.spec import RunRecord
from tfprune.protocols.store import ENVIRONMENT_FILE, GRID_FILE, RunStore

__all__ = [
    "REPORT_DIR",
    "Report",
    "check_report_dir",
    "format_value",
    "markdown_table",
    "plot_accuracy_vs_epoch",
    "plot_accuracy_vs_speedup",
    "plot_jsv_vs_epoch",
    "summary_csv",
    "write_report",
]

logger = logging.getLogger(__name__)

REPORT_DIR = "report"
_ACC_KEYS = ("val_accuracy", "test_accuracy", "accuracy")


@dataclasses.dataclass
class Report:
    """What :func:`write_report` produced.

    Attributes:
      protocol: Protocol name.
      markdown: What ``tfprune-compare`` and ``tfprune-report`` print: the verdicts, then the
        compact table (:func:`compact_table`) and where the full table is.
      paths: Files written, by kind (``md``, ``csv``, ``json``, plot names).
      finished: Number of finished runs.
      expected: Number of runs in the grid (from ``grid.json``), or None when unknown.
      problems: What is wrong in the folder, one line each (also in ``markdown``).
    """

    protocol: str
    markdown: str
    paths: dict[str, Path]
    finished: int
    expected: int | None
    problems: list[str] = dataclasses.field(default_factory=list)


def check_report_dir(output_dir: str | Path) -> Path:
    """``<output_dir>/report``, or an error when something that is not a folder is in its place.

    Raises:
      InvalidArgumentError: naming the file and the fix.
    """
    folder = Path(output_dir) / REPORT_DIR
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(
            f"{folder} is a file, where the report folder goes; move it away (or delete it), "
            "then run again"
        )
    return folder


def format_value(value: Any) -> str:
    """Table text of one cell value (floats to 4 significant digits, lists joined)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _display_columns(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols = list(columns) or sorted({k for r in rows for k in r})
    return cols


def _pair(columns: Sequence[str]) -> dict[str, str]:
    """Columns shown as ``mean ± std``: ``x`` with ``x_std`` / ``mean`` with ``std``."""
    pairs = {}
    for c in columns:
        if c == "mean" and "std" in columns:
            pairs["mean"] = "std"
        elif f"{c}_std" in columns:
            pairs[c] = f"{c}_std"
        elif c.endswith("_mean") and c[: -len("_mean")] + "_std" in columns:
            pairs[c] = c[: -len("_mean")] + "_std"
    return pairs


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = ()) -> str:
    """Markdown table of ``rows``; ``x`` with ``x_std`` (or ``mean``/``std``) shown ``x ± std``."""
    cols = _display_columns(columns, rows)
    pairs = _pair(cols)
    hidden = set(pairs.values())
    shown = [c for c in cols if c not in hidden]
    heads = [f"{c} ± std" if c in pairs else c for c in shown]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    for r in rows:
        cells = []
        for c in shown:
            text = format_value(r.get(c))
            if c in pairs and r.get(pairs[c]) is not None and r.get(c) is not None:
                text += f" ± {format_value(r.get(pairs[c]))}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: Any, digits: int = 1) -> str:
    return (
        "-"
        if not isinstance(value, (int, float)) or value != value
        else f"{100 * value:.{digits}f}"
    )


def _p_text(p: Any) -> str:
    if not isinstance(p, (int, float)) or p != p:
        return "p=n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def compact_table(rows: Sequence[Mapping[str, Any]], width: int = 100) -> str:
    """The results a person reads first: one line per cell, in percent, at most ``width`` wide.

    Columns: cell, seeds (n), final accuracy % (mean ± std), difference from the cell's
    seed-paired reference in points with its paired p-value, the setup label of that
    comparison, and the MAC reduction (×). The full table is in ``summary.md``/``.csv``.
    """
    heads = ["cell", "n", "accuracy %", "vs reference", "setup", "MACs"]
    body = []
    for r in rows:
        acc = _pct(r.get("mean"))
        if isinstance(r.get("std"), (int, float)) and r.get("n", 0) > 1:
            acc += f" ± {_pct(r.get('std'))}"
        pairs = r.get("paired_seeds")
        if "reference" in r and r["reference"] is None:
            diff = "(reference)"
        elif isinstance(r.get("diff_vs_ref"), (int, float)):
            diff = f"{100 * r['diff_vs_ref']:+.1f} pt "
            if pairs is not None and len(pairs) < MIN_TESTED_SEEDS:
                diff += f"n<{MIN_TESTED_SEEDS}, not tested"
            else:
                diff += _p_text(r.get("p_vs_ref"))
        else:
            diff = "-"
        speed = r.get("speedup")
        macs = f"{speed:.2f}×" if isinstance(speed, (int, float)) else "-"
        body.append(
            [
                str(r.get("cell", "")),
                str(r.get("n", "")),
                acc,
                diff,
                str(r.get("setup") or "-"),
                macs,
            ]
        )
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(heads)
    ]
    fixed = sum(widths[1:]) + 2 * (len(heads) - 1)
    widths[0] = max(8, min(widths[0], width - fixed))
    right = {1, 2, 5}

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths, strict=True)):
            c = c if len(c) <= w else c[: w - 1] + "…"
            out.append(c.rjust(w) if i in right else c.ljust(w))
        return "  ".join(out).rstrip()

    lines = [line(heads), line(["-" * w for w in widths])] + [line(b) for b in body]
    if any(isinstance(r.get("n"), int) and r["n"] < MIN_TESTED_SEEDS for r in rows):
        lines.append(
            f"differences over fewer than {MIN_TESTED_SEEDS} seed pairs are not tested: no "
            "p-value, no win or loss"
        )
    return "\n".join(lines)


def summary_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = ()) -> str:
    """CSV text of ``rows`` (all listed columns, raw values; lists and dicts as JSON)."""
    cols = _display_columns(columns, rows)
    extra = sorted({k for r in rows for k in r} - set(cols))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols + extra)
    for r in rows:
        out = []
        for c in cols + extra:
            v = r.get(c)
            out.append(json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v))
        writer.writerow(out)
    return buf.getvalue()


def _acc_history(record: RunRecord) -> list[float] | None:
    for key in _ACC_KEYS:
        values = record.history.get(key)
        if isinstance(values, list) and values:
            return [float(v) for v in values]
    return None


@dataclasses.dataclass
class _Curve:
    """Per-epoch mean, lowest and highest over a cell's seeds (``n`` runs)."""

    mean: list[float]
    low: list[float]
    high: list[float]
    n: int


def _seed_curves(
    records: Sequence[RunRecord], pick: Callable[[RunRecord], list[float] | None]
) -> dict[str, _Curve]:
    by_cell: dict[str, list[list[float]]] = defaultdict(list)
    for r in records:
        values = pick(r)
        if values:
            by_cell[str(r.spec.get("cell", "?"))].append(values)
    curves = {}
    for cell, runs in by_cell.items():
        n = min(len(v) for v in runs)
        cols = [[v[i] for v in runs] for i in range(n)]
        curves[cell] = _Curve(
            mean=[sum(c) / len(c) for c in cols],
            low=[min(c) for c in cols],
            high=[max(c) for c in cols],
            n=len(runs),
        )
    return curves


def _save(fig: Figure, path: Path) -> Path:
    # A bare Figure renders with matplotlib's Agg canvas: no pyplot state, and the caller's
    # matplotlib backend (a notebook's, say) is left alone.
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _split_long(curves: Mapping[str, _Curve]) -> list[dict[str, _Curve]]:
    """Curves much longer than the others (scratch budgets) get a panel of their own."""
    lengths = sorted(len(c.mean) for c in curves.values())
    typical = lengths[(len(lengths) - 1) // 2]
    short = {k: c for k, c in curves.items() if len(c.mean) <= 1.5 * typical}
    long = {k: c for k, c in curves.items() if k not in short}
    return [short, long] if short and long else [dict(curves)]


def _line_plot(curves: Mapping[str, _Curve], path: Path, *args: Any, **kw: Any) -> Path | None:
    """:func:`_line_figure` saved as a PNG at ``path`` (None, nothing written, without curves)."""
    fig = _line_figure(curves, *args, **kw)
    return None if fig is None else _save(fig, path)


def _line_figure(
    curves: Mapping[str, _Curve],
    ylabel: str,
    title: str,
    *,
    logy: bool = False,
    first_epoch: int = 1,
    scale: float = 1.0,
    note: str | None = None,
) -> Figure | None:
    """Mean over seeds per cell, the band between its lowest and highest seed, legend outside.

    Epochs are whole numbers on the x axis; ``note`` (e.g. that the grid is not finished) is
    added under the title.
    """
    if not curves:
        return None
    panels = _split_long(curves)
    fig = Figure(figsize=(8.5, 3.6 * len(panels) + 0.6))
    axes = fig.subplots(len(panels), 1, squeeze=False, sharey=True)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        for cell, c in sorted(panel.items()):
            xs = list(range(first_epoch, first_epoch + len(c.mean)))
            (line,) = ax.plot(
                xs, [scale * y for y in c.mean], label=f"{cell} (n={c.n})", linewidth=1.5
            )
            if c.n > 1:
                ax.fill_between(
                    xs,
                    [scale * y for y in c.low],
                    [scale * y for y in c.high],
                    color=line.get_color(),
                    alpha=0.15,
                    linewidth=0,
                )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes[0, 0].set_title(
        _title(f"{title}\nline: mean over seeds; band: lowest to highest seed", note)
    )
    fig.tight_layout()
    return fig


def _title(title: str, note: str | None) -> str:
    return f"{title}\n{note}" if note else title


def plot_accuracy_vs_epoch(
    records: Sequence[RunRecord], path: str | Path, *, note: str | None = None
) -> Path | None:
    """Test accuracy (%) per training epoch: mean over seeds with the seeds' range as a band.

    Cells trained much longer than the others (scratch budgets) are drawn in a second panel so
    that they do not squeeze the rest. ``note`` is added under the title.
    """
    return _line_plot(
        _seed_curves(records, _acc_history),
        Path(path),
        "test accuracy (%)",
        "Test accuracy during (re)training",
        scale=100.0,
        note=note,
    )


def plot_jsv_vs_epoch(
    records: Sequence[RunRecord], path: str | Path, *, note: str | None = None
) -> Path | None:
    """Mean JSV per epoch (entry 0 = right after pruning), one line per cell; None if absent."""

    def jsv(r: RunRecord) -> list[float] | None:
        values = r.history.get("jsv_mean")
        if not isinstance(values, list):
            return None
        clean = [float(v) for v in values if isinstance(v, (int, float))]
        return clean if len(clean) == len(values) and clean else None

    return _line_plot(
        _seed_curves(records, jsv),
        Path(path),
        "mean Jacobian singular value (log scale)",
        "Mean JSV per epoch (epoch 0: right after pruning)",
        logy=True,
        first_epoch=0,
        note=note,
    )


_METRIC_WORDS = {"final_acc": "final", "best_acc": "best"}


def _accuracy_points(
    records: Sequence[RunRecord], metric: str
) -> dict[str, list[tuple[float, float]]]:
    """Per cell, ``(MAC reduction, accuracy %)`` of every run that recorded both."""
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        s, a = r.metrics.get("speedup"), r.metrics.get(metric)
        if isinstance(s, (int, float)) and isinstance(a, (int, float)):
            points[str(r.spec.get("cell", "?"))].append((float(s), 100.0 * float(a)))
    return points


def _one_reduction(points: Mapping[str, list[tuple[float, float]]]) -> bool:
    """Whether every run has (within 1 %) the same MAC reduction."""
    speedups = [p[0] for pts in points.values() for p in pts]
    return bool(speedups) and max(speedups) <= 1.01 * min(speedups)


def plot_accuracy_vs_speedup(
    records: Sequence[RunRecord],
    path: str | Path,
    *,
    metric: str = "final_acc",
    note: str | None = None,
) -> Path | None:
    """Accuracy (%) of every run against its MAC reduction, one marker colour per cell.

    ``metric`` is the record metric drawn (``final_acc`` or ``best_acc``, as the report
    compares). When every run has the same reduction (one pruning ratio), a scatter would stack
    them on one x, so the cells are spread along x instead: seeds as dots, mean ± std as a bar,
    titled as accuracy per cell (:func:`write_report` then names the file
    ``accuracy_per_cell.png``). ``note`` is added under the title.
    """
    points = _accuracy_points(records, metric)
    if not points:
        return None
    return _save(_accuracy_figure(points, metric, note), Path(path))


def _accuracy_figure(
    points: Mapping[str, list[tuple[float, float]]], metric: str, note: str | None
) -> Figure:
    """The figure of :func:`plot_accuracy_vs_speedup`."""
    which = _METRIC_WORDS.get(metric, metric)
    speedups = [p[0] for pts in points.values() for p in pts]
    fig = Figure(figsize=(8.5, 4.8))
    ax = fig.subplots()
    if _one_reduction(points):
        cells = sorted(points)
        for i, cell in enumerate(cells):
            accs = [p[1] for p in points[cell]]
            mean = sum(accs) / len(accs)
            std = (sum((a - mean) ** 2 for a in accs) / max(len(accs) - 1, 1)) ** 0.5
            ax.scatter([i] * len(accs), accs, s=18, label=f"{cell} (n={len(accs)})")
            ax.errorbar([i + 0.15], [mean], yerr=[std], fmt="_", color="black", capsize=4)
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels(cells, rotation=30, ha="right", fontsize=7)
        ax.set_xlabel(f"cell (every run at {min(speedups):.2f}× fewer MACs)")
        title = f"{which.capitalize()} test accuracy per cell: dots = seeds, bar = mean ± std"
    else:
        for cell, pts in sorted(points.items()):
            ax.scatter(
                [p[0] for p in pts], [p[1] for p in pts], label=f"{cell} (n={len(pts)})", s=18
            )
        ax.set_xlabel("MAC reduction of the pruned model (×, dense MACs / pruned MACs)")
        title = f"{which.capitalize()} test accuracy vs MAC reduction (one dot per run)"
    ax.set_ylabel(f"{which} test accuracy (%)")
    ax.set_title(_title(title, note))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


_DEFAULTS_USED = "the report uses the protocol's defaults (its reference cell and metric)"


def _protocol_params(output_dir: Path, problems: list[str]) -> dict[str, Any] | None:
    """The protocol's own config from ``config.yaml``.

    None, with a line in ``problems``, when the file is missing or unreadable.
    """
    path = output_dir / CONFIG_FILE
    if not path.exists():
        problems.append(f"{path}: missing; {_DEFAULTS_USED}")
        return None
    try:
        return dict(ProtocolConfig.from_flat_dict(load_yaml(path)).params)
    except TfpruneError as err:
        problems.append(f"{path}: unreadable ({' '.join(str(err).split())}); {_DEFAULTS_USED}")
        return None


def _read_grid(output_dir: Path, problems: list[str]) -> dict[str, Any]:
    """``grid.json`` (``{}``, with a line in ``problems``, when missing or unreadable)."""
    path = output_dir / GRID_FILE
    grid = _read_json(path)
    runs = grid.get("runs") if isinstance(grid, dict) else None
    ok = isinstance(runs, list) and all(isinstance(r, dict) and "run_id" in r for r in runs)
    if ok:
        return grid
    why = "missing" if not path.exists() else "unreadable (not a grid of runs)"
    problems.append(f"{path}: {why}; the number of runs in the grid is unknown")
    return {}


def _partial_note(records: Sequence[RunRecord], grid: Mapping[str, Any]) -> str | None:
    """What a plot must say when the grid is not finished (None when it is, or is unknown).

    Names the cells with runs still missing, with how many of their runs are finished.
    """
    runs = grid.get("runs") or []
    if not runs or len(records) >= len(runs):
        return None
    wanted = Counter(str(r.get("cell")) for r in runs)
    done = Counter(str(r.spec.get("cell")) for r in records)
    short = [f"{c} ({done[c]} of {n})" for c, n in sorted(wanted.items()) if done[c] < n]
    text = f"PARTIAL: {len(records)} of {len(runs)} runs finished"
    if short:
        more = f" and {len(short) - 3} more" if len(short) > 3 else ""
        text += f"; cells missing runs: {', '.join(short[:3])}{more}"
    return text


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _environment_lines(store: RunStore, run_ids: Sequence[str]) -> list[str]:
    if not run_ids:
        return []
    env = _read_json(store.run_dir(run_ids[0]) / ENVIRONMENT_FILE) or {}
    pkgs = env.get("packages") or {}
    text = ", ".join(f"{k} {v}" for k, v in pkgs.items() if v)
    return [
        f"Environment (first run): Python {env.get('python')}, {text}; "
        f"git {env.get('git_commit') or 'unknown'}; strategy {env.get('strategy')}."
    ]


def write_report(
    output_dir: str | Path,
    *,
    protocol: str | None = None,
    registry: Mapping[str, Any] | None = None,
    plots: bool = True,
    tables: bool = True,
    log: Callable[[str], None] | None = None,
) -> Report:
    """Summarize every finished run of ``output_dir`` into ``<output_dir>/report/``.

    Args:
      output_dir: A ``tfprune-compare`` output folder.
      protocol: Protocol whose ``summarize`` is used (default: ``grid.json``/``config.yaml``,
        else the records' ``spec.protocol``).
      registry: Protocol registry (default :data:`tfprune.protocols.grids.PROTOCOLS`).
      plots: Write the PNG plots.
      tables: Write ``summary.md``/``.csv``/``.json`` (the Markdown is returned either way).
      log: Where to say what was written.

    Raises:
      NoFinishedRunsError: ``output_dir`` has no finished run.
      ConfigError: the protocol is not registered.
    """
    log = log or logger.info
    output_dir = Path(output_dir)
    report_dir = check_report_dir(output_dir)
    store = RunStore(output_dir)
    problems = store.problems()
    records = store.load_records()
    if not records:
        damaged = "; ".join(store.damaged_records().values())
        raise NoFinishedRunsError(
            f"no finished runs in {output_dir / 'runs'} (a run is finished when its "
            "record.json exists)"
            + (f"; damaged: {damaged}" if damaged else "")
            + "; run tfprune-compare --output_dir=... first"
        )
    grid = _read_grid(output_dir, problems)
    if protocol is None:
        protocol = grid.get("protocol") or str(records[0].spec.get("protocol"))
    if registry is None:
        registry = PROTOCOLS
    if protocol not in registry:
        raise ConfigError(
            f"protocol {protocol!r} is not registered{did_you_mean(protocol, registry)}; "
            f"known protocols: {', '.join(sorted(registry))}"
        )
    proto = registry[protocol]
    records = [r for r in records if r.spec.get("protocol", protocol) == protocol]
    expected_ids = [r["run_id"] for r in grid.get("runs", [])] if grid else None
    if expected_ids is not None:
        wanted = set(expected_ids)
        in_grid = [r for r in records if r.run_id in wanted]
        records = in_grid or records
    params = _protocol_params(output_dir, problems)
    summary = proto.summarize(records, params)

    report_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(summary.rows, summary.columns)
    verdicts = "\n".join(f"- {v}" for v in summary.verdicts)
    found = "\n".join(f"- {p}" for p in problems)
    printed = (f"problems found:\n{found}\n\n" if problems else "") + (
        verdicts + "\n\n" if verdicts else ""
    )
    printed += compact_table(summary.rows)
    printed += f"\n\nfull table and plots: {report_dir}/summary.md"
    paths: dict[str, Path] = {}
    n_expected = len(expected_ids) if expected_ids is not None else None
    if plots:
        note = _partial_note(records, grid)
        metric = str((params or {}).get("metric", "final_acc"))
        points = _accuracy_points(records, metric)
        accuracy = "accuracy_per_cell" if _one_reduction(points) else "accuracy_vs_speedup"
        for name in {"accuracy_per_cell", "accuracy_vs_speedup"} - {accuracy}:
            (report_dir / f"{name}.png").unlink(missing_ok=True)  # an earlier report's
        for name, fn, kw in (
            ("accuracy_vs_epoch", plot_accuracy_vs_epoch, {}),
            ("jsv_vs_epoch", plot_jsv_vs_epoch, {}),
            (accuracy, plot_accuracy_vs_speedup, {"metric": metric}),
        ):
            written = fn(records, report_dir / f"{name}.png", note=note, **kw)
            if written is not None:
                paths[name] = written
    if tables:
        done = f"{len(records)} finished runs" + (
            f" of {n_expected} in the grid" if n_expected is not None else ""
        )
        if n_expected is not None and len(records) < n_expected:
            done = f"PARTIAL: {done}"
        doc = [
            f"# {protocol}",
            "",
            getattr(proto, "description", "") or "",
            "",
            f"{done}; mean ± std over seeds.",
            "",
        ]
        if problems:
            doc += ["## Problems found", "", found, ""]
        doc += [table, ""]
        if summary.verdicts:
            doc += ["## Verdicts", "", verdicts, ""]
        if paths:
            doc += ["## Plots", ""] + [f"![{k}]({p.name})" for k, p in paths.items()] + [""]
        ids = sorted(r.run_id for r in records)
        doc += _environment_lines(store, ids)
        paths["md"] = atomic_write_text(report_dir / "summary.md", "\n".join(doc) + "\n")
        paths["csv"] = atomic_write_text(
            report_dir / "summary.csv", summary_csv(summary.rows, summary.columns)
        )
        paths["json"] = atomic_write_json(report_dir / "summary.json", summary.to_dict())
    log(f"report written to {report_dir} ({', '.join(sorted(p.name for p in paths.values()))})")
    return Report(
        protocol=protocol,
        markdown=printed,
        paths=paths,
        finished=len(records),
        expected=n_expected,
        problems=problems,
    )
