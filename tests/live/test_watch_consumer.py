"""Live watch over a websocket: history first, then the node's published batches, permission re-checked.

The session's node is real in-process: a RecordingWriter registered with a
RecordingFlusher whose watched batches NodeSignals publishes on the
in-memory channel layer, leased by the consumer's own watch requests.
"""

import asyncio
import contextlib
import uuid

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from guardian.shortcuts import remove_perm

from gateway_site.node_signals import NodeSignals
from gateway_site.routing import websocket_urlpatterns
from gateway_site.watch_publisher import BATCH_MAX
from recordings.writer import RecordingFlusher

RECEIVE_TIMEOUT = 5


def watcher(user, public_id) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/sessions/{public_id}/watch/")
    communicator.scope["user"] = user
    return communicator


async def node_for(writer) -> tuple[RecordingFlusher, NodeSignals]:
    flusher = RecordingFlusher(60.0)
    signals = NodeSignals(None, flusher)
    flusher.on_watched_batch = signals.publish_watched_batch
    flusher.register(writer)
    await signals.start()
    return flusher, signals


async def until_watched(writer) -> None:
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while not writer.watched:
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def watched_by(user, session, writer):
    """The session's node, and a watcher connected once the node publishes: yields (flusher, communicator)."""
    flusher, signals = await node_for(writer)
    communicator = watcher(user, session.public_id)
    await communicator.connect()
    await until_watched(writer)
    try:
        yield flusher, communicator
    finally:
        await communicator.disconnect()
        await signals.stop()


async def received_until(communicator: WebsocketCommunicator, text: str) -> str:
    """Everything received until a message containing `text`."""
    seen = []
    while True:
        seen.append(await communicator.receive_from(RECEIVE_TIMEOUT))
        if text in seen[-1]:
            return "".join(seen)


def test_it_sends_history_then_live_events_without_gaps_or_repeats(personas, live_session):
    session, writer = live_session

    async def scenario():
        flusher, signals = await node_for(writer)
        writer.event("sql", {"n": 1, "text": "SELECT 'before the watcher'"})
        await flusher.flush_once()
        communicator = watcher(personas.reviewer, session.public_id)
        connected, _ = await communicator.connect()
        history = await received_until(communicator, "before the watcher")
        await until_watched(writer)
        writer.event("sql", {"n": 2, "text": "SELECT 'while watched'"})
        writer.event("result", {"n": 2, "ms": 0.4, "columns": ["?column?"], "rows": [["while watched"]]})
        await flusher.flush_once()
        live = await received_until(communicator, "<pre")
        rest = await communicator.receive_nothing(0.3)
        await communicator.disconnect()
        await signals.stop()
        return connected, history, live, rest

    connected, history, live, nothing_more = asyncio.run(scenario())

    assert connected
    assert "live-events" in history and "before the watcher" not in live
    assert live.count("SELECT &#x27;while watched&#x27;") == 1
    assert nothing_more


def test_it_reads_a_gap_from_the_recording(personas, live_session):
    session, writer = live_session

    async def scenario():
        async with watched_by(personas.reviewer, session, writer) as (flusher, communicator):
            writer.watched_until = 0  # the lease lapses: this batch is written but not published
            writer.event("sql", {"n": 1, "text": "SELECT 'missed live'"})
            await flusher.flush_once()
            writer.watch(30)
            writer.event("sql", {"n": 2, "text": "SELECT 'published'"})
            await flusher.flush_once()
            return await received_until(communicator, "published")

    received = asyncio.run(scenario())

    assert received.index("missed live") < received.index("published")


def test_it_caps_a_large_batch_and_says_how_many_were_skipped(personas, live_session):
    session, writer = live_session

    async def scenario():
        async with watched_by(personas.reviewer, session, writer) as (flusher, communicator):
            for n in range(1, BATCH_MAX + 21):
                writer.event("sql", {"n": n, "text": f"SELECT {n}"})
            await flusher.flush_once()
            return await received_until(communicator, "skipped")

    received = asyncio.run(scenario())

    assert f">SELECT {BATCH_MAX}</pre>" in received
    assert f">SELECT {BATCH_MAX + 1}</pre>" not in received
    assert "20 events came faster than they could be shown" in received


def test_it_refuses_an_outsider_and_a_missing_session_alike(personas, live_session):
    session, _writer = live_session

    async def scenario():
        results = []
        for user, public_id in ((personas.outsider, session.public_id), (personas.reviewer, uuid.uuid4())):
            communicator = watcher(user, public_id)
            results.append(await communicator.connect())
        return results

    outsider, missing = asyncio.run(scenario())

    assert outsider == missing and outsider[0] is False


def test_it_stops_forwarding_once_the_permission_is_taken_away(personas, live_session):
    session, writer = live_session

    async def scenario():
        async with watched_by(personas.reviewer, session, writer) as (flusher, communicator):
            await asyncio.to_thread(remove_perm, "connections.view_sessions", personas.reviewer, personas.warehouse)
            writer.event("sql", {"n": 1, "text": "SELECT 'secret from now on'"})
            await flusher.flush_once()
            return await communicator.receive_output(RECEIVE_TIMEOUT)

    output = asyncio.run(scenario())

    assert output["type"] == "websocket.close" and output["code"] == 4403
