"""Buffered recording writers and the node-wide flusher. No Django here.

The proxy calls `RecordingWriter.event` on the event loop for every message
it records; that only appends a tuple to a list. A `RecordingFlusher` swaps
each writer's list out every few hundred milliseconds on the loop thread and
hands all the batches to one worker thread, which chains, serializes and
appends them to the files. So the relay never waits for a disk.

Memory: pending lists hold what arrived since the last tick, so they are
bounded by traffic times the flush interval (and the proxy caps what it
records per statement). A slow disk delays the next tick, since only one
flush is in flight at a time; it does not stack up batches.

Crash safety: each batch is one append. A kill -9 loses at most the batches
not yet written and may leave one incomplete last line, which recovery cuts
(`recordings.actions.mark_interrupted_sessions`); everything before it still
verifies.
"""

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from recordings.chain import ChainWriter

logger = logging.getLogger(__name__)

ASCIICAST_WIDTH = 80
ASCIICAST_HEIGHT = 24
# What a session keeps of its distinct statement texts for the sessions list's text search.
SEARCH_TEXT_MAX_CHARS = 16_384


class RecordingWriter:
    """One session's recording file, fed by `event` and written in batches.

    Thread use: `event`, `take_pending` and `close` run on the event loop
    thread; `write_header` and `write_batch` run in one worker thread at a
    time (the flusher guarantees it, or the caller when used without one).
    """

    def __init__(
        self,
        path: Path,
        session_id: str,
        header_meta: dict,
        started_monotonic: float | None = None,
    ) -> None:
        now = time.monotonic()
        self.path = Path(path)
        self.started_monotonic = now if started_monotonic is None else started_monotonic
        self.chain = ChainWriter(session_id)
        self.session_id = self.chain.session_id
        self.header = {
            "version": 2,
            "width": ASCIICAST_WIDTH,
            "height": ASCIICAST_HEIGHT,
            "timestamp": int(time.time() - (now - self.started_monotonic)),
            "gatehouse": header_meta,
        }
        self.closed = False
        self.finished = False
        self.end_status: str | None = None
        self.end_counters: dict[str, int] = {}
        self.dropped_events = 0
        self.watched_until = 0.0  # monotonic; while ahead, the flusher publishes batches to watchers
        self.search_texts: dict[str, None] = {}  # distinct statement texts as recorded, in order
        self._search_chars = 0
        self._pending: list[tuple[float, str, Any]] = []

    # --- loop thread ----------------------------------------------------------

    def event(self, kind: str, data: Any) -> None:
        """Record one event; O(1), no I/O. Ignored once the writer is closed.

        `data` is serialized later, in the flush thread: pass a value that
        nobody mutates afterwards.
        """
        if not self.closed:
            self._pending.append((time.monotonic() - self.started_monotonic, kind, data))

    def watch(self, seconds: float) -> None:
        """Publish this session's batches to its watchers for the next `seconds` (a renewable lease)."""
        self.watched_until = max(self.watched_until, time.monotonic() + seconds)

    @property
    def watched(self) -> bool:
        return self.watched_until > time.monotonic()

    def take_pending(self) -> list[tuple[float, str, Any]]:
        """Swap out the events recorded since the last call."""
        batch = self._pending
        self._pending = []
        return batch

    def close(self, status: str = "ended", counters: dict[str, int] | None = None) -> None:
        """Record the "end" event and stop accepting events; the next flush finishes the file."""
        if self.closed:
            return
        self.end_status = status
        self.end_counters = dict(counters or {})
        self.event("end", {"status": status, **self.end_counters})
        self.closed = True

    # --- worker thread --------------------------------------------------------

    @property
    def chain_head(self) -> str:
        """The link of the last line written (final once `finished`)."""
        return self.chain.head

    @property
    def line_count(self) -> int:
        """Lines written so far, header included (final once `finished`)."""
        return self.chain.line_count

    @property
    def search_text(self) -> str:
        """The session's distinct statements, newline-joined, at most SEARCH_TEXT_MAX_CHARS."""
        return "\n".join(self.search_texts)[:SEARCH_TEXT_MAX_CHARS]

    def _collect_search_texts(self, batch: list[tuple[float, str, Any]]) -> None:
        if self._search_chars >= SEARCH_TEXT_MAX_CHARS:
            return  # full: every later batch would be looked through for nothing
        texts = self.search_texts
        for _t, kind, data in batch:
            if kind == "sql":
                text = data.get("text")
                if isinstance(text, str) and text not in texts:
                    texts[text] = None
                    self._search_chars += len(text) + 1
                    if self._search_chars >= SEARCH_TEXT_MAX_CHARS:
                        return

    def write_header(self) -> None:
        """Write the header line now if it is not written yet (the first batch does it otherwise)."""
        if self.chain.line_count == 0:
            self.write_batch([])

    def write_batch(self, batch: list[tuple[float, str, Any]]) -> None:
        """Chain, serialize and append `batch` (and the header, first time) in one write."""
        encoded = self.encode_batch(batch)
        if encoded is not None:
            self.append_encoded(*encoded)

    def encode_batch(self, batch: list[tuple[float, str, Any]]) -> tuple[list[bytes], tuple, int] | None:
        """Chain and serialize `batch`: (the lines in segments, chain state before, event count), or None if
        nothing to write."""
        if not batch and self.chain.line_count > 0:
            return None
        self._collect_search_texts(batch)
        state = self.chain.snapshot()
        try:
            header = [self.chain.encode_line(self.header)] if self.chain.line_count == 0 else []
            segments = self.chain.encode_events(batch)
        except BaseException:
            self.chain.restore(state)
            self.dropped_events += len(batch)
            raise
        return header + segments, state, len(batch)

    def append_encoded(self, segments: list[bytes], state: tuple, events: int) -> None:
        """Append what `encode_batch` made, as the very next write.

        If the write fails, the chain is rewound and any partial append cut
        off, so the file stays verifiable; the batch is then lost (logged by
        the caller) rather than kept to grow without bound.
        """
        try:
            self._append(segments)
        except BaseException:
            self.chain.restore(state)
            self.dropped_events += events
            raise

    def _append(self, segments: list[bytes]) -> None:
        # Owner-only: recordings hold (masked) production data. Unbuffered,
        # so a failed write leaves nothing behind to be flushed later, after
        # the chain has been rewound.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size_before = os.fstat(fd).st_size
            try:
                for segment in segments:
                    view = memoryview(segment)
                    while view:
                        view = view[os.write(fd, view) :]
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size_before)
                raise
        finally:
            os.close(fd)

    def flush_now(self) -> None:
        """Write everything pending synchronously (for callers without a flusher, and tests)."""
        self.write_batch(self.take_pending())
        if self.closed:
            self.finished = True


OnFinished = Callable[[RecordingWriter], Awaitable[None]]
# (writer, line number of the batch's first event, the batch): called on the loop for watched writers.
OnWatchedBatch = Callable[[RecordingWriter, int, list[tuple[float, str, Any]]], None]


class RecordingFlusher:
    """Flushes every registered writer on a timer, from one worker thread per tick.

    `on_finished(writer)` is awaited once for each writer that was closed and
    whose last batch has been written (the Django glue seals the session
    there); the writer is then dropped. `on_watched_batch` sees each batch
    of a watched writer before it is written; every earlier batch is on disk
    by then, so a watcher can read any gap from the file.
    """

    def __init__(
        self,
        interval: float,
        on_finished: OnFinished | None = None,
        on_watched_batch: OnWatchedBatch | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the flush interval must be positive")
        self.interval = interval
        self.on_finished = on_finished
        self.on_watched_batch = on_watched_batch
        self._writers: set[RecordingWriter] = set()
        self._flush_lock = asyncio.Lock()
        # Guards the files if a flush was cancelled (a caller of drain() was)
        # while its thread was still writing, and the next one starts.
        self._write_lock = threading.Lock()
        self._task: asyncio.Task | None = None
        self._tick: asyncio.Future | None = None  # the timer's latest flush

    def register(self, writer: RecordingWriter) -> None:
        """Start flushing `writer` (call on the loop thread)."""
        self._writers.add(writer)

    @property
    def writers(self) -> frozenset[RecordingWriter]:
        return frozenset(self._writers)

    def writer_for(self, session_id: str) -> RecordingWriter | None:
        """The registered writer of a session, if this flusher has it (a linear scan: for rare requests)."""
        return next((writer for writer in self._writers if writer.session_id == session_id), None)

    def start(self) -> asyncio.Task:
        """Run the timer loop as a task on the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="recording-flusher")
        return self._task

    async def run(self) -> None:
        """Flush every `interval` seconds until cancelled; a flush under way then still runs to its end."""
        while True:
            await asyncio.sleep(self.interval)
            # Shielded: a flush cut off between encoding a closed writer's batch and writing it would
            # let the next one seal the session over lines that are not on disk yet (or never, if the
            # process exits first).
            self._tick = asyncio.ensure_future(self._logged_flush())
            await asyncio.shield(self._tick)

    async def _logged_flush(self) -> None:
        try:
            await self.flush_once()
        except Exception:
            logger.exception("Recording flush failed; retrying on the next tick")

    async def stop(self) -> None:
        """Stop the timer loop, let a flush under way finish, then write out everything pending."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._tick is not None:
            await self._tick
        await self.drain()

    async def drain(self) -> None:
        """Write everything pending now and finish closed writers (shutdown, tests)."""
        await self.flush_once()

    async def flush_once(self) -> None:
        """One tick: swap and encode batches on the loop, append them in one thread, finish closed writers.

        Encoding stays on the loop thread: a worker thread doing CPU work would
        hold the GIL against the relay for whole switch intervals, while a
        thread that only writes releases it at once. The loop runs between two
        writers' batches, so that a tick's encoding (milliseconds under load)
        does not stall every session at once.
        """
        async with self._flush_lock:
            work = []
            for writer in list(self._writers):
                batch, closed = writer.take_pending(), writer.closed
                if batch and writer.watched_until and writer.watched:
                    self._publish(writer, batch)
                encoded = self._encode(writer, batch)
                if encoded is not None or closed:
                    work.append((writer, encoded, closed))
                if batch:
                    await asyncio.sleep(0)
            if any(encoded is not None for _, encoded, _ in work):
                await asyncio.to_thread(self._write_all, work)
            finished = [writer for writer, _, closed in work if closed]
            for writer in finished:
                writer.finished = True
                self._writers.discard(writer)
        for writer in finished:
            await self._finish(writer)

    def _publish(self, writer: RecordingWriter, batch: list) -> None:
        if self.on_watched_batch is None:
            return
        try:
            self.on_watched_batch(writer, max(writer.line_count, 1), batch)  # line 0 is the header
        except Exception:
            logger.exception("Could not publish a batch of recording %s to its watchers", writer.session_id)

    @staticmethod
    def _encode(writer: RecordingWriter, batch: list) -> tuple | None:
        try:
            return writer.encode_batch(batch)
        except Exception:
            logger.exception("Could not encode %d events of recording %s", len(batch), writer.session_id)
            return None

    def _write_all(self, work: list[tuple[RecordingWriter, tuple | None, bool]]) -> None:
        with self._write_lock:
            for writer, encoded, _ in work:
                if encoded is None:
                    continue
                try:
                    writer.append_encoded(*encoded)
                except Exception:
                    logger.exception(
                        "Could not write %d events of recording %s to %s", encoded[2], writer.session_id, writer.path
                    )

    async def _finish(self, writer: RecordingWriter) -> None:
        if self.on_finished is None:
            return
        try:
            await self.on_finished(writer)
        except Exception:
            logger.exception("Could not finish recording %s", writer.session_id)
