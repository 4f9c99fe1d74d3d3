"""The live terminal display of a load run (rich): elapsed time, counters, latencies, errors.

Refreshed from the event loop (no rich refresh thread reads the counters), on stderr, so
stdout stays for the final verdict. Off when the caller asks (tests) or stderr is no terminal.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.live import Live
from rich.table import Table


class LiveProgress:
    """`start()`, then `show(...)` a few times a second, then `stop()` (safe twice)."""

    def __init__(self, title: str, enabled: bool = True) -> None:
        self._title = title
        self._console = Console(stderr=True)
        self._live: Live | None = None
        self._enabled = enabled and self._console.is_terminal

    def start(self) -> None:
        """Take over the bottom of the terminal."""
        if self._enabled and self._live is None:
            self._live = Live(console=self._console, auto_refresh=False, transient=False)
            self._live.start()

    def show(
        self,
        elapsed: float,
        duration: float,
        counters: Mapping[str, int],
        errors: Mapping[str, int],
        latencies: Mapping[str, float] | None = None,
    ) -> None:
        """Redraw with the latest figures."""
        if self._live is None:
            return
        table = Table(title=f"{self._title}  {elapsed:5.1f} / {duration:.0f} s", expand=False)
        table.add_column("counter")
        table.add_column("value", justify="right")
        for name, value in sorted(counters.items()):
            table.add_row(name, str(value))
        for name, millis in sorted((latencies or {}).items()):
            table.add_row(f"{name} (p50)", f"{millis:.1f}")
        for code, count in sorted(errors.items()):
            table.add_row(f"[red]error {code}[/red]", f"[red]{count}[/red]")
        self._live.update(table, refresh=True)

    def stop(self) -> None:
        """Leave the last table on screen."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()
