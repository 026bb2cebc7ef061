"""The cost of a grid as text: the table of runs, the totals, counts and durations.

:func:`format_cost` prints what :class:`tfprune.protocols.cost.model.GridCost` holds, one line
per run then the totals (:func:`format_totals`), in at most 100 columns. :func:`format_count`
writes a count with an SI suffix, :func:`format_seconds` a duration.
"""

from __future__ import annotations

from tfprune.protocols.cost.model import GridCost, format_epochs

__all__ = ["format_cost", "format_count", "format_seconds", "format_totals"]


def format_count(x: float) -> str:
    """A count with an SI suffix, 3 significant digits: ``"42.3G"``, ``"3.48K"``, ``"600M"``."""
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def format_seconds(seconds: float) -> str:
    """``"7.3s"``, ``"4m05s"`` or ``"2h03m"``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_totals(cost: GridCost) -> list[str]:
    """The totals of ``cost`` as lines of text (at most 100 columns)."""
    ep = cost.epochs
    bound = " (upper bound)" if ep["prune"] else ""
    jsv_n = max((r.jsv_samples for r in cost.runs), default=0)
    jsv = sum(r.jsv for r in cost.runs)
    lines = [
        f"{len(cost.runs)} runs, {len(cost.bases)} base models (each trained once)",
        f"epochs: base {format_epochs(ep['base'])}, pruning {format_epochs(ep['prune'])}"
        f"{bound}, retraining {format_epochs(ep['retrain'])}",
        f"training FLOPs: {format_count(cost.train_flops)} = base "
        f"{format_count(cost.base_flops)} + pruning {format_count(cost.prune_flops)} + "
        f"retraining {format_count(cost.retrain_flops)}",
        "  (3 x 2 x MACs x examples x epochs: forward+backward ~ 3 forward passes, "
        "1 MAC = 2 FLOPs)",
        f"evaluation: {sum(r.evals for r in cost.runs)} test-set passes "
        f"({format_count(cost.eval_flops)} FLOPs)"
        + (f"; mean JSV: {jsv} measurements x {jsv_n} Jacobians" if jsv else ""),
    ]
    if cost.seconds is not None:
        lines.append(
            f"estimated wall time: {format_seconds(cost.seconds)} = runs "
            f"{format_seconds(cost.seconds - cost.startup_seconds)} + process start "
            f"{format_seconds(cost.startup_seconds)} (not included: the report at the end)"
        )
    return lines


def format_cost(cost: GridCost, title: str = "") -> str:
    """A readable table (at most 100 columns) of the runs of ``cost``, then their totals."""
    timed = cost.seconds is not None
    head = (
        f"{'run id':<12}  {'cell':<25}  {'seed':>4}  {'epochs b/p/r':<12}  {'ex/ep':>6}  "
        f"{'MACs/ex':<12}  {'FLOPs':>7}" + ("  est. s" if timed else "")
    )
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for r in cost.runs:
        cell = r.cell if len(r.cell) <= 25 else r.cell[:24] + "~"
        macs = f"{format_count(r.dense_macs)}->{format_count(r.pruned_macs)}"
        n = r.examples_per_epoch
        line = (
            f"{r.run_id:<12}  {cell:<25}  {r.seed:>4}  {r.epochs_text():<12}  "
            f"{n if n < 1_000_000 else format_count(n):>6}  {macs:<12}  "
            f"{format_count(r.train_flops):>7}"
        )
        if timed:
            line += f"  {r.seconds:6.1f}"
        lines.append(line)
    lines.append("-" * len(head))
    lines.append(
        "epochs b/p/r = base/pruning/retraining; (20) = base loaded from the cache (trained by an"
    )
    lines.append(
        "earlier run); <=30 = upper bound. FLOPs = this run's training FLOPs (its base included"
    )
    lines.append(
        "when it trains it); MACs/ex = MACs per example, dense -> pruned; est. s = estimated "
        "seconds."
        if timed
        else "when it trains it); MACs/ex = MACs per example, dense -> pruned."
    )
    lines += format_totals(cost)
    lines.extend(f"note: {n}" for n in cost.notes)
    return "\n".join(lines)
