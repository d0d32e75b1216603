"""Fitting a terminal table to the terminal's width without cutting a number.

Left to itself, rich shrinks every column of a table wider than the terminal and folds or
ellipsises the cells: ``0.053`` becomes ``0.0`` over ``53``, or ``0.…``, and nothing says
so. A benchmark table whose numbers may be cut is worse than none, so the tables decide
their own layout before rich sees them (:func:`plan_layout`):

- When every column fits at its natural width (the note column at least
  ``note_min`` wide, wrapping its words), the table is the full one, as before.
- Otherwise the table is narrowed, the way an engineer reading it in an 80-column
  terminal wants it: the row's identity and its headline numbers stay, each number whole
  on one line; the free-text note (a failure's reason, the int8 format, an emulated
  device's speed factor) leaves the table and is printed under it, one wrapped line per
  row that has one (a note is prose and reads well wrapped at the terminal's width,
  while a 16-column note column would steal the room of three numbers); and the least
  important number columns are left out, in the table's documented priority order,
  with a footer line naming them and how to see them (a wider terminal, or ``--format
  markdown``/``csv``/``json``, which always hold every column).

Dropping columns was preferred to folding each row into two lines: two-line rows halve
how many variants fit on a screen and make columns hard to scan down, which is what a
comparison table is read for; the left-out columns are the ones read least (where a
power figure came from, energy, SNR).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len

# rich's default table (padding (0, 1), edges shown): each column costs its width, one
# space either side and one rule; the table one more rule at its right edge.
COLUMN_COST = 3
EDGE_COST = 1
NOTE_MIN = 16  # narrower than this, a note wraps to a word a line: better under the table


@dataclass(frozen=True)
class Layout:
    """Which columns a table shows at a width, and what it leaves out."""

    columns: tuple[str, ...]  # shown, in the table's own order
    left_out: tuple[str, ...]  # number and text columns not shown (never the note)
    note_inline: bool  # the note column is in the table; else its texts go under it


def natural_widths(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> dict[str, int]:
    """Each column's width with no cell folded: its widest cell or its header."""
    return {
        col: max([cell_len(col), *(cell_len(row[i]) for row in rows)])
        for i, col in enumerate(columns)
    }


def plan_layout(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    priority: Sequence[str],
    required: int,
    note: str | None = None,
    note_min: int = NOTE_MIN,
) -> Layout:
    """The columns of ``columns`` to show at ``width`` terminal columns.

    ``priority`` lists every column but the note, most important first; its first
    ``required`` are always shown (they name the row and give its headline number), the
    rest are added in that order while they fit, and the first that does not fit ends the
    list (so what is left out is always the tail of the documented order), except that a
    column without a value in any row comes after all the others. ``note``, when
    given, is the one column that wraps: it stays in the table only in the full layout.
    """
    assert set(priority) | ({note} if note else set()) == set(columns), "priority names all"
    widths = natural_widths(columns, rows)
    fixed = [c for c in columns if c != note]
    full = sum(widths[c] for c in fixed) + COLUMN_COST * len(fixed) + EDGE_COST
    if note is not None:
        full += COLUMN_COST + min(note_min, widths[note])
    if full <= width:
        return Layout(tuple(columns), (), note is not None)
    # A column with no value in any row ("-" throughout: accuracy for a model without
    # labels, SNR where no run measured it) tells nothing: it goes to the end of the order.
    index = {c: i for i, c in enumerate(columns)}
    empty = {c for c in priority[required:] if all(r[index[c]] in ("-", "") for r in rows)}
    order = [*priority[:required], *(c for c in priority[required:] if c not in empty)]
    order += [c for c in priority[required:] if c in empty]
    chosen: list[str] = []
    used = EDGE_COST
    for rank, col in enumerate(order):
        cost = widths[col] + COLUMN_COST
        if rank >= required and used + cost > width:
            break
        chosen.append(col)
        used += cost
    shown = tuple(c for c in columns if c in chosen)
    left_out = tuple(c for c in columns if c not in chosen and c != note)
    return Layout(shown, left_out, False)


def left_out_line(left_out: Sequence[str], width: int, wider: str) -> str:
    """The footer naming what a narrowed table left out and where to see it."""
    return (
        f"left out at {width} columns: {', '.join(left_out)}; {wider} shows "
        "every column, and so does a wider terminal"
    )
