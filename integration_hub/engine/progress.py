"""Progress of long work, as a few lines: at most one every `HUB_PROGRESS_SECONDS` (default 10).

A push of many records, a large load and a waiting backfill each report how far they are, with
the rate and the time left when the total is known, to whoever asked: the run's log
(`context.log.info`) in a Dagster step, stderr in the CLI. Work that ends within the period says
nothing: the result's own summary says it all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dlt.common.runtime.collector import LogCollector

from integration_hub import settings

Report = Callable[[str], None]


class Meter:
    """Counts units of `what` done; `add` reports a line when the period has passed since the last."""

    def __init__(
        self, what: str, unit: str, total: int | None, report: Report | None, every: float | None = None
    ):
        self.what, self.unit, self.total, self.report = what, unit, total, report
        self.every = settings.progress_seconds() if every is None else every
        self.done, self.started = 0, time.monotonic()
        self.last = self.started

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.report is not None and now - self.last >= self.every:
            self.last = now
            self.report(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        of = f" of {self.total:,} ({self.done / self.total:.0%})" if self.total else ""
        left = ""
        if self.total and rate > 0 and self.done < self.total:
            left = f", about {_duration((self.total - self.done) / rate)} left"
        return f"{self.what}: {self.done:,}{of} {self.unit} in {_duration(elapsed)}, {rate:,.0f}/s{left}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class DltProgress(LogCollector):
    """dlt's progress collector (extract, normalize, load: rows and files per table) to `logger`,
    only once a step has run for the period, then each period and at its end: dlt's own logs at the
    first row and at the end of every step, six blocks for a load of a second."""

    def __init__(self, logger: logging.Logger, every: float | None = None):
        period = settings.progress_seconds() if every is None else every
        super().__init__(log_period=period, logger=logger, dump_system_stats=False)
        self.logged = False

    def _start(self, step: str) -> None:
        super()._start(step)
        self.last_log_time, self.logged = self._clock(), False

    def on_log(self) -> None:
        self.logged = True
        super().on_log()

    def _stop(self) -> None:
        if self.logged:
            self.dump_counters()
        self.counters = self.counter_info = self.messages = self.last_log_time = None
