"""Plain-text tables: readable in a terminal, a cron mail and a CI log alike."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *,
                 levels: Sequence[str | None] | None = None, marks=None) -> str:
    """Aligned columns. ``levels`` (one per row: ok / warning / failed, or None) are shown by
    ``marks`` (``ops.render.Marks``) as a symbol and colour per row when it is on; the text,
    and so a cron mail or a CI log, is the same without them."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if marks is not None and marks.enabled:
        # NOTE: coloured after padding: escape codes would count as width otherwise.
        row_levels = [None, None, *(levels or [None] * len(rows))]
        lines = [marks.line(line, level) for line, level in zip(lines, row_levels, strict=True)]
    return "\n".join(lines)


def human_bytes(n: int | float | None, *, missing: str = "?") -> str:
    """``12 B``, ``3.4 MiB``, ``1.2 TiB``: sizes in tables and messages."""
    if n is None:
        return missing
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
