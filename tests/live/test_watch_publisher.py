"""The watch publisher gathers a watched session's batches into spaced, capped messages on the channel layer."""

import asyncio
import uuid

from channels.layers import InMemoryChannelLayer

from gateway_site.broadcast import session_group
from gateway_site.watch_publisher import WatchPublisher
from recordings.writer import RecordingWriter


def sql_events(first: int, count: int) -> list:
    return [(0.1 * n, "sql", {"n": n, "text": f"SELECT {n}"}) for n in range(first, first + count)]


def test_it_sends_one_capped_message_per_interval_with_lines_kept_contiguous(tmp_path):
    writer = RecordingWriter(tmp_path / "s.jsonl", str(uuid.uuid4()), {})

    async def scenario():
        layer = InMemoryChannelLayer()
        channel = await layer.new_channel()
        await layer.group_add(session_group(writer.session_id), channel)
        publish = WatchPublisher(layer, interval=0.1, limit=20)
        publish(writer, 1, sql_events(1, 15))
        publish(writer, 16, sql_events(16, 10))  # 5 fit, 5 do not
        publish(writer, 26, sql_events(26, 3))  # after a skip: counted only
        first = await asyncio.wait_for(layer.receive(channel), 2)
        publish(writer, 29, sql_events(29, 2))
        second = await asyncio.wait_for(layer.receive(channel), 2)
        return first, second

    first, second = asyncio.run(scenario())

    assert first["first_line"] == 1 and first["skipped"] == 8
    assert [event[2]["n"] for event in first["events"]] == list(range(1, 21))
    assert second["first_line"] == 29 and [event[2]["n"] for event in second["events"]] == [29, 30]
    assert second["skipped"] == 0
