"""Progress bars that also work in log files.

tqdm hides itself when stderr is not a terminal; a training run under nohup would then
log nothing for an hour. Here a non-terminal gets a plain line every 30 s instead - and
nothing at all for a job shorter than that, so a command that fails early still leaves
exactly its one error line on a piped stderr.
"""

from __future__ import annotations

import sys


def progress(
    iterable=None, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "it", enabled: bool = True
):
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(
        iterable,
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        dynamic_ncols=interactive,
        disable=not enabled,
        mininterval=0.2 if interactive else 30.0,
        delay=0.0 if interactive else 30.0,
        ascii=not interactive,
    )
