"""The benches' Markdown tables: the first column left, the figures right-aligned."""

from __future__ import annotations

from collections.abc import Sequence


def markdown(lines: Sequence[Sequence[str]]) -> str:
    """A header row and its rows as a Markdown table."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def row(line: Sequence[str]) -> str:
        cells = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([row(lines[0]), rule, *(row(line) for line in lines[1:])])
