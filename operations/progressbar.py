"""A one-line progress bar for management commands (only drawn on a terminal)."""
from __future__ import annotations

import time


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return str(value)


class ProgressBar:
    """``echo`` callback of the runner (``protect``, ``restore``, ``verify``): gets the operation's
    bank ``Progress`` totals and redraws at most 10 times a second."""

    def __init__(self, stream, *, label: str, width: int = 30) -> None:
        self.stream, self.label, self.width = stream, label, width
        self.enabled = bool(getattr(stream, "isatty", lambda: False)())
        self._last = 0.0
        self._drawn = False

    def __call__(self, progress) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        self.draw(progress)

    def draw(self, progress) -> None:
        bytes_total, items_total = progress.bytes_total, progress.items_total
        fraction = (progress.bytes_done / bytes_total) if bytes_total else (1.0 if bytes_total == 0 else 0.0)
        filled = int(self.width * min(1.0, fraction))
        items = f"{progress.items_done}/{items_total}" if items_total is not None else str(progress.items_done)
        total = _size(bytes_total) if bytes_total is not None else "?"
        line = (
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}% "
            f"{_size(progress.bytes_done)} / {total}, {items} items"
        )
        self.stream.write(line, ending="")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("")
