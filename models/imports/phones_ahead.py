"""Normalise an import's phones in a helper process, a few thousand lines ahead of the checks that need them.

Parsing a phone costs more than the rest of its line (`phonenumbers` is pure Python). For a large file, a helper
process parses the phones of the next batches of lines while this one checks the current batch: the two work on
two cores. The checks use what the helper found (`RowValidator.ahead`) and parse only what it could not know.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TextIO

from models.members.phones import normalise_many

HELPER_BYTES = 4_000_000  # smaller files parse in line: a helper takes about a second to start
BATCH_ROWS = 4_096
IN_FLIGHT = 3  # batches the helper may be ahead

log = logging.getLogger(__name__)

Line = tuple[int, list[str]]
Phones = dict[tuple[str, str], str | ValueError]
ReadError = UnicodeDecodeError | csv.Error


class PhonesAhead:
    """Batches of lines, each with its phones normalised by the helper (None without one).

    A line that cannot be read ends the batches: the last batch carries the error, raised by the caller once the
    lines before it are checked, so it names the right line. A helper that fails (killed, out of memory) is given up:
    the phones of that batch and the next ones are parsed in line.
    """

    def __init__(self, pairs_of: Callable[[list[Line]], list[tuple[str, str]]], *, helper: bool) -> None:
        self.pairs_of = pairs_of
        self.helper = helper
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> PhonesAhead:
        if self.helper:
            # spawn, not fork: the process holds a database connection and may run threads. Ctrl-C is the
            # importing process's to handle: the helper ignores it and is stopped on the way out.
            self.pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=signal.signal,
                initargs=(signal.SIGINT, signal.SIG_IGN),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def batches(self, lines: Iterator[Line]) -> Iterator[tuple[list[Line], Phones | None, ReadError | None]]:
        waiting: deque[tuple[list[Line], Future[Phones] | None, ReadError | None]] = deque()
        for batch, error in _read(lines):
            found = None if self.pool is None else self.pool.submit(normalise_many, self.pairs_of(batch))
            waiting.append((batch, found, error))
            if len(waiting) >= IN_FLIGHT:
                yield self._ready(*waiting.popleft())
        while waiting:
            yield self._ready(*waiting.popleft())

    def _ready(
        self, batch: list[Line], found: Future[Phones] | None, error: ReadError | None
    ) -> tuple[list[Line], Phones | None, ReadError | None]:
        if found is None or self.pool is None:
            return batch, None, error
        try:
            return batch, found.result(), error
        except Exception:  # a BrokenProcessPool, or anything the helper raised
            log.warning("members import: the phones' helper failed; phones are parsed in line", exc_info=True)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
            return batch, None, error


def large(handle: TextIO) -> bool:
    """Return whether what is left of the file is worth a helper process."""
    try:
        return os.fstat(handle.fileno()).st_size - handle.tell() >= HELPER_BYTES
    except (OSError, ValueError):  # no file behind it (io.UnsupportedOperation is both)
        return False


def _read(lines: Iterator[Line]) -> Iterator[tuple[list[Line], ReadError | None]]:
    batch: list[Line] = []
    try:
        for line in lines:
            batch.append(line)
            if len(batch) == BATCH_ROWS:
                yield batch, None
                batch = []
    except (UnicodeDecodeError, csv.Error) as exc:
        yield batch, exc
        return
    if batch:
        yield batch, None
