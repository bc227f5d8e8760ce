"""Progress for long work, on stderr: a live bar on a terminal, a line every few seconds in logs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(
    items: Iterable[T],
    *,
    total: int | None = None,
    label: str = "",
    every_s: float = 5.0,
    enabled: bool = True,
) -> Iterator[T]:
    """Yield ``items`` while reporting count, rate and time left on stderr."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    live = sys.stderr.isatty()
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if enabled and (now - last >= (0.2 if live else every_s) or done == total):
            last = now
            rate = done / max(now - start, 1e-9)
            left = f", {(total - done) / rate:.0f}s left" if total and rate > 0 else ""
            of = f"/{total}" if total else ""
            bar = ""
            if total and live:
                filled = int(30 * done / total)
                bar = "[" + "#" * filled + "." * (30 - filled) + "] "
            start_of_line = "\r" if live else ""
            end_of_line = "" if live and done != total else "\n"
            sys.stderr.write(f"{start_of_line}{label} {bar}{done}{of} ({rate:.1f}/s{left}){end_of_line}")
            sys.stderr.flush()
