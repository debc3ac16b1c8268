"""Progress of a long evaluation: a bar on a terminal or in a notebook, a plain line now and then in a log.

Written to a file or a pipe (a batch job's log), a bar's carriage-return fragments pile up; there the main process
prints one line every ``interval`` seconds and one at the end, e.g.::

    scoring xnli/fr: 12,480/37,500 requests (this process), 41.3 requests/s, ETA 10m06s

Only the main process reports; under data-parallel evaluation its counts are its own share of the requests.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from bloomz_tune.runtime import interactive, is_main_process, print0

LOG_INTERVAL_S = 30.0


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class ScoringProgress:
    """``update(n)`` as requests are scored; ``close()`` at the end. Silent when ``enabled`` is false."""

    def __init__(self, total: int, desc: str = "scoring", enabled: bool = True, shared: bool = False,
                 interval: float = LOG_INTERVAL_S):
        self.total, self.desc, self.interval = total, desc, interval
        self.share = " (this process)" if shared else ""
        self.enabled = enabled and is_main_process()
        self.bar = tqdm(total=total, desc=desc) if self.enabled and interactive() else None
        self.done = 0
        self.start = self.last = time.perf_counter()

    def line(self) -> str:
        """requests done, requests/s and the time left at that rate."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = _duration((self.total - self.done) / rate) if rate > 0 else "-"
        return (f"{self.desc}: {self.done:,}/{self.total:,} requests{self.share}, {rate:.1f} requests/s, "
                f"ETA {eta}")

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.perf_counter() - self.last >= self.interval:
            self.last = time.perf_counter()
            print0(self.line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.total:
            print0(self.line())
