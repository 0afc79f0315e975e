"""Progress bars and log lines: both go to stderr, so `--json` output on stdout stays parseable.

A bar appears only on a terminal and only for work that lasts more than a couple of seconds; in
a log file (stderr not a terminal) there is none, so logs are not flooded.
"""

from __future__ import annotations

import sys


def progress_bar(iterable=None, total: int | None = None, desc: str = "", enabled: bool = True,
                 initial: int = 0, unit: str = "it"):
    """A tqdm bar on stderr (shown after 2 s, on a terminal only), or the iterable unchanged."""
    if not enabled:
        return iterable if iterable is not None else _NoBar()
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, initial=initial, unit=unit, leave=False,
                delay=2.0, disable=None, file=sys.stderr, dynamic_ncols=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def log(*parts) -> None:
    """A log line on stderr."""
    print(*parts, file=sys.stderr, flush=True)


def quiet(*parts) -> None:
    """A logger that says nothing."""
