"""Per-block widths of a residual network's first convs (how a pruned ResNet is built small)."""

from __future__ import annotations

from collections.abc import Sequence

from tfprune.errors import InvalidArgumentError

__all__ = ["block_width_table"]


def block_width_table(
    conv1_widths: Sequence[int | Sequence[int]] | None,
    widths: Sequence[int],
    blocks: Sequence[int],
) -> list[list[int]]:
    """The first-conv width of every block, stage by stage.

    Args:
      conv1_widths: ``None`` (every block at its stage's full width), or one entry per stage:
        an int for all of that stage's blocks, or one int per block.
      widths: The full width of each stage.
      blocks: The number of blocks of each stage.

    Raises:
      InvalidArgumentError: a wrong number of entries, or widths that are not ints >= 1.
    """
    if conv1_widths is None:
        return [[w] * n for w, n in zip(widths, blocks, strict=True)]
    entries = list(conv1_widths)
    if len(entries) != len(blocks):
        raise InvalidArgumentError(
            f"conv1_widths must have {len(blocks)} entries (one per stage), got {len(entries)}: "
            f"{conv1_widths!r}"
        )
    table = []
    for stage, (entry, n) in enumerate(zip(entries, blocks, strict=True), start=1):
        row = [entry] * n if isinstance(entry, int) else list(entry)
        if len(row) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in row):
            raise InvalidArgumentError(
                f"conv1_widths[{stage - 1}] must be an int or {n} ints (one per block of stage "
                f"{stage}), got {entry!r}"
            )
        if any(v < 1 for v in row):
            raise InvalidArgumentError(f"conv1_widths must be >= 1, got {row} for stage {stage}")
        table.append(row)
    return table
