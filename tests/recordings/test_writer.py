"""Recording writers and the flusher: batches reach the disk in order, chained, off the loop thread."""

import asyncio
import json
import threading
import time
import uuid

import pytest

from recordings.chain import verify_file
from recordings.writer import SEARCH_TEXT_MAX_CHARS, RecordingFlusher, RecordingWriter


def make_writer(tmp_path, name="session"):
    session_id = str(uuid.uuid4())
    return RecordingWriter(tmp_path / f"{name}.jsonl", session_id, {"session": session_id, "actor": "agent:ci"})


def events_in(path):
    return [json.loads(line) for line in path.read_bytes().splitlines()[1:]]


def test_it_buffers_events_until_a_batch_is_written(tmp_path):
    writer = make_writer(tmp_path)
    writer.event("sql", {"text": "SELECT 1"})
    writer.event("result", {"tag": "SELECT 1"})

    assert not writer.path.exists()
    writer.write_batch(writer.take_pending())

    assert writer.take_pending() == []
    assert [event[1:3] for event in events_in(writer.path)] == [
        ["sql", {"text": "SELECT 1"}],
        ["result", {"tag": "SELECT 1"}],
    ]
    first, second = (event[0] for event in events_in(writer.path))
    assert 0 <= first <= second
    result = verify_file(writer.session_id, writer.path)
    assert result.ok and result.line_count == writer.line_count == 3
    assert result.chain_head == writer.chain_head


def test_it_writes_a_valid_header_for_a_session_without_events(tmp_path):
    writer = make_writer(tmp_path)
    writer.close()
    writer.flush_now()

    header = json.loads(writer.path.read_bytes().splitlines()[0])
    assert header["version"] == 2 and header["width"] == 80 and header["height"] == 24
    assert header["gatehouse"]["session"] == writer.session_id
    assert [event[1:3] for event in events_in(writer.path)] == [["end", {"status": "ended"}]]
    assert writer.finished
    assert verify_file(writer.session_id, writer.path).line_count == 2


def test_it_times_events_from_the_given_start(tmp_path):
    session_id = str(uuid.uuid4())
    writer = RecordingWriter(tmp_path / "s.jsonl", session_id, {}, started_monotonic=0.0)
    writer.event("o", "x")
    writer.flush_now()

    (t, *_rest) = events_in(writer.path)[0]
    assert t > 0 and round(t, 6) == t


def test_it_ignores_events_after_close(tmp_path):
    writer = make_writer(tmp_path)
    writer.close("terminated", {"statements": 2})
    writer.event("sql", {"text": "too late"})
    writer.flush_now()

    assert [event[1:3] for event in events_in(writer.path)] == [["end", {"status": "terminated", "statements": 2}]]
    assert (writer.end_status, writer.end_counters) == ("terminated", {"statements": 2})


def test_it_rewinds_the_chain_when_a_write_fails(tmp_path):
    session_id = str(uuid.uuid4())
    path = tmp_path / "not-yet" / "s.jsonl"
    writer = RecordingWriter(path, session_id, {})
    writer.event("sql", {"text": "lost"})
    with pytest.raises(FileNotFoundError):
        writer.write_batch(writer.take_pending())
    assert (writer.line_count, writer.dropped_events) == (0, 1)

    path.parent.mkdir()
    writer.event("sql", {"text": "kept"})
    writer.flush_now()

    assert [event[2] for event in events_in(path)] == [{"text": "kept"}]
    assert verify_file(session_id, path).ok


def test_it_flushes_in_batches_and_finishes_closed_writers(tmp_path):
    finished = []

    async def on_finished(writer):
        finished.append((writer, writer.line_count, writer.chain_head))

    async def scenario():
        flusher = RecordingFlusher(60, on_finished)
        writer = make_writer(tmp_path)
        flusher.register(writer)
        writer.event("sql", {"n": 1})
        writer.event("sql", {"n": 2})
        await flusher.flush_once()
        after_first = len(writer.path.read_bytes().splitlines())
        writer.event("sql", {"n": 3})
        writer.close("ended", {"statements": 3})
        assert finished == []
        await flusher.drain()
        return flusher, writer, after_first

    flusher, writer, after_first = asyncio.run(scenario())

    assert after_first == 3  # header + the first batch
    assert [event[2] for event in events_in(writer.path)] == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
        {"status": "ended", "statements": 3},
    ]
    assert finished == [(writer, 5, verify_file(writer.session_id, writer.path).chain_head)]
    assert writer.finished
    assert flusher.writers == frozenset()


def test_it_writes_the_header_of_an_idle_session_on_the_next_tick(tmp_path):
    async def scenario():
        flusher = RecordingFlusher(60)
        writer = make_writer(tmp_path)
        flusher.register(writer)
        await flusher.flush_once()
        return writer

    writer = asyncio.run(scenario())

    assert writer.line_count == 1
    assert verify_file(writer.session_id, writer.path).ok


def test_it_writes_files_off_the_loop_thread(tmp_path):
    loop_thread = threading.get_ident()
    seen_threads = set()

    class ObservedWriter(RecordingWriter):
        def append_encoded(self, segments, state, events):
            seen_threads.add(threading.get_ident())
            super().append_encoded(segments, state, events)

    async def scenario():
        flusher = RecordingFlusher(60)
        for n in range(3):
            writer = ObservedWriter(tmp_path / f"{n}.jsonl", str(uuid.uuid4()), {})
            writer.event("o", "hi")
            flusher.register(writer)
        await flusher.drain()

    asyncio.run(scenario())

    assert len(seen_threads) == 1  # one worker thread for the whole tick
    assert loop_thread not in seen_threads


def test_it_lets_the_loop_run_between_two_writers_batches(tmp_path):
    """Sessions keep relaying while a tick encodes: another callback runs before the next batch is encoded."""
    seen = []

    class ObservedWriter(RecordingWriter):
        def encode_batch(self, batch):
            seen.append(ran_meanwhile.is_set())
            return super().encode_batch(batch)

    ran_meanwhile = threading.Event()
    writers = [ObservedWriter(tmp_path / f"{n}.jsonl", str(uuid.uuid4()), {}) for n in range(2)]

    async def scenario():
        flusher = RecordingFlusher(60)
        for writer in writers:
            writer.event("o", "hi")
            flusher.register(writer)
        asyncio.get_running_loop().call_soon(ran_meanwhile.set)  # queued before the tick starts
        await flusher.drain()

    asyncio.run(scenario())

    assert seen == [False, True]
    assert all(verify_file(writer.session_id, writer.path).ok for writer in writers)


def test_it_encodes_a_big_batch_without_holding_it_twice(tmp_path):
    """A burst of terminal output (NULs, six bytes each as JSON) is encoded at about its own size, not twice it."""
    import tracemalloc

    writer = make_writer(tmp_path)
    writer.write_header()
    for _ in range(100):
        writer.event("o", "\x00" * 32768)
    batch = writer.take_pending()
    tracemalloc.start()
    try:
        segments, _state, _count = writer.encode_batch(batch)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    encoded = sum(len(segment) for segment in segments)

    assert encoded > 19_000_000
    assert peak < 1.3 * encoded


def test_it_keeps_flushing_other_recordings_when_one_fails(tmp_path, caplog):
    finished = []

    async def on_finished(writer):
        finished.append(writer)

    async def scenario():
        flusher = RecordingFlusher(60, on_finished)
        broken = RecordingWriter(tmp_path / "missing-dir" / "x.jsonl", str(uuid.uuid4()), {})
        healthy = make_writer(tmp_path)
        for writer in (broken, healthy):
            flusher.register(writer)
            writer.event("sql", {"text": "SELECT 1"})
            writer.close()
        await flusher.drain()
        return broken, healthy

    broken, healthy = asyncio.run(scenario())

    assert verify_file(healthy.session_id, healthy.path).line_count == 3
    assert not broken.path.exists() and broken.dropped_events == 2
    assert set(finished) == {broken, healthy}
    assert f"Could not write 2 events of recording {broken.session_id}" in caplog.text


def test_it_keeps_finishing_writers_when_on_finished_fails(tmp_path, caplog):
    async def on_finished(writer):
        raise RuntimeError("database is down")

    async def scenario():
        flusher = RecordingFlusher(60, on_finished)
        writers = [make_writer(tmp_path, name) for name in ("a", "b")]
        for writer in writers:
            flusher.register(writer)
            writer.close()
        await flusher.drain()
        return flusher, writers

    flusher, writers = asyncio.run(scenario())

    assert all(writer.finished for writer in writers)
    assert flusher.writers == frozenset()
    assert caplog.text.count("Could not finish recording") == 2


def test_it_flushes_on_its_timer_and_drains_on_stop(tmp_path):
    async def scenario():
        done = asyncio.Event()

        async def on_finished(writer):
            done.set()

        flusher = RecordingFlusher(0.01, on_finished)
        flusher.start()
        first = make_writer(tmp_path, "first")
        flusher.register(first)
        first.event("o", "timer")
        first.close()
        await asyncio.wait_for(done.wait(), timeout=30)
        second = make_writer(tmp_path, "second")
        flusher.register(second)
        second.event("o", "at stop")
        await flusher.stop()
        return first, second

    first, second = asyncio.run(scenario())

    assert first.finished
    assert [event[2] for event in events_in(first.path)] == ["timer", {"status": "ended"}]
    assert [event[2] for event in events_in(second.path)] == ["at stop"]
    assert not second.finished  # still open: stop() writes it out but does not end it


def test_stop_lets_a_flush_under_way_write_before_it_seals(tmp_path):
    """stop() cancels the timer while a flush's thread may still be writing: the seal must wait for the write."""
    writing = threading.Event()

    class SlowDiskFlusher(RecordingFlusher):
        def _write_all(self, work):
            writing.set()
            time.sleep(0.3)  # a slow disk: the cancel lands while the batch is being written
            super()._write_all(work)

    async def scenario():
        sealed = []

        async def on_finished(writer):
            sealed.append((writer.line_count, verify_file(writer.session_id, writer.path)))

        flusher = SlowDiskFlusher(0.01, on_finished)
        writer = make_writer(tmp_path)
        flusher.register(writer)
        writer.event("o", "last words")
        writer.close()
        flusher.start()
        assert await asyncio.to_thread(writing.wait, 30)
        await flusher.stop()
        return writer, sealed

    writer, sealed = asyncio.run(scenario())

    ((line_count, verified),) = sealed  # sealed once, after the write
    assert verified.ok and verified.line_count == line_count == 3
    assert [event[2] for event in events_in(writer.path)] == ["last words", {"status": "ended"}]


def test_it_refuses_a_zero_interval():
    with pytest.raises(ValueError, match="positive"):
        RecordingFlusher(0)


def test_it_publishes_a_watched_writers_batches_with_their_line_numbers(tmp_path):
    watched, unwatched = make_writer(tmp_path, "watched"), make_writer(tmp_path, "unwatched")
    published = []
    flusher = RecordingFlusher(1.0, on_watched_batch=lambda w, first, batch: published.append((w, first, batch)))
    for writer in (watched, unwatched):
        writer.write_header()
        flusher.register(writer)
    watched.watch(30)
    watched.event("sql", {"n": 1, "text": "SELECT 1"})
    unwatched.event("sql", {"n": 1, "text": "SELECT 2"})
    asyncio.run(flusher.flush_once())
    watched.event("result", {"n": 1, "rows": [[1]]})
    asyncio.run(flusher.flush_once())

    assert [(w, first, [e[1:] for e in batch]) for w, first, batch in published] == [
        (watched, 1, [("sql", {"n": 1, "text": "SELECT 1"})]),
        (watched, 2, [("result", {"n": 1, "rows": [[1]]})]),
    ]
    lines = watched.path.read_bytes().splitlines()
    assert json.loads(lines[2])[1] == "result"  # line 2 of the file, as published
    assert flusher.writer_for(watched.session_id) is watched
    assert flusher.writer_for(str(uuid.uuid4())) is None


def test_it_stops_publishing_when_the_watch_lease_runs_out(tmp_path):
    writer = make_writer(tmp_path)
    published = []
    flusher = RecordingFlusher(1.0, on_watched_batch=lambda *args: published.append(args))
    flusher.register(writer)
    writer.watch(0)
    writer.event("sql", {"n": 1, "text": "SELECT 1"})
    asyncio.run(flusher.flush_once())

    assert not writer.watched and published == []
    assert events_in(writer.path)[0][1] == "sql"


def test_it_keeps_writing_when_publishing_fails(tmp_path, caplog):
    writer = make_writer(tmp_path)

    def broken(*args):
        raise RuntimeError("channel layer down")

    flusher = RecordingFlusher(1.0, on_watched_batch=broken)
    flusher.register(writer)
    writer.watch(30)
    writer.event("sql", {"n": 1, "text": "SELECT 1"})
    asyncio.run(flusher.flush_once())

    assert events_in(writer.path)[0][1:3] == ["sql", {"n": 1, "text": "SELECT 1"}]
    assert "Could not publish a batch" in caplog.text


def test_it_keeps_distinct_statements_for_search_up_to_a_cap(tmp_path):
    writer = make_writer(tmp_path)
    writer.event("sql", {"n": 1, "text": "SELECT * FROM orders"})
    writer.event("result", {"n": 1, "rows": []})
    writer.event("sql", {"n": 2, "text": "SELECT * FROM orders"})
    writer.event("sql", {"n": 3, "text": "DELETE FROM carts WHERE id = $1"})
    for n in range(4, 2000):
        writer.event("sql", {"n": n, "text": f"SELECT {'x' * 100} AS c{n}"})
    writer.flush_now()

    lines = writer.search_text.split("\n")
    assert lines[:2] == ["SELECT * FROM orders", "DELETE FROM carts WHERE id = $1"]
    assert len(writer.search_text) <= SEARCH_TEXT_MAX_CHARS
    assert len(lines) < 200

    full = writer.search_text
    writer.event("sql", {"n": 2000, "text": "SELECT 'a later batch, after the cap'"})
    writer.flush_now()
    assert writer.search_text == full
