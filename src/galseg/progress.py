"""Progress for long work, on stderr: a live bar on a terminal, a line every few seconds in logs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """Count of work done, reported with rate and time left; ``update`` after each item."""

    def __init__(self, total: int | None, *, label: str = "", every_s: float = 5.0, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.live = sys.stderr.isatty()
        self.every_s = 0.2 if self.live else every_s
        self.start = self.last = time.monotonic()
        self.done = 0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.every_s or self.done == self.total):
            self.last = now
            self._report(now)

    def _report(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        left = f", {(self.total - self.done) / rate:.0f}s left" if self.total and rate > 0 else ""
        bar = ""
        if self.total and self.live:
            filled = int(30 * self.done / self.total)
            bar = "[" + "#" * filled + "." * (30 - filled) + "] "
        start = "\r" if self.live else ""
        end = "" if self.live and self.done != self.total else "\n"
        sys.stderr.write(f"{start}{self.label} {bar}{self.done}{of} ({rate:.1f}/s{left}){end}")
        sys.stderr.flush()


def progress(
    items: Iterable[T],
    *,
    total: int | None = None,
    label: str = "",
    every_s: float = 5.0,
    enabled: bool = True,
) -> Iterator[T]:
    """Yield ``items``, reporting each one done."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    bar = Progress(total, label=label, every_s=every_s, enabled=enabled)
    for item in items:
        yield item
        bar.update()
