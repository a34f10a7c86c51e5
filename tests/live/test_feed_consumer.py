"""The reviewers' feed over a websocket: every announcement re-renders what that user may see.

Reviews are requested and decided through the real actions, which announce
on commit over the in-memory channel layer, exactly as the gateway and the
reviewer pages do.
"""

import asyncio

from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from approvals.actions import do_decide_review, do_request_review
from gateway_site.broadcast import aannounce, feed_message
from gateway_site.routing import websocket_urlpatterns

RECEIVE_TIMEOUT = 5
STATEMENT = "ALTER TABLE invoices ADD COLUMN notes text"


def feed(user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/feed/")
    communicator.scope["user"] = user
    return communicator


def request_review(personas):
    return do_request_review(
        connection_id=personas.warehouse.pk,
        session_public_id=None,
        account_id=personas.requester.pk,
        rule="schema-changes",
        statement=STATEMENT,
        timeout_seconds=300,
    )


def test_it_pushes_a_new_review_to_its_reviewer_and_not_to_an_outsider(personas):
    async def scenario():
        reviewer, outsider = feed(personas.reviewer), feed(personas.outsider)
        assert (await reviewer.connect())[0] and (await outsider.connect())[0]
        review = await database_sync_to_async(request_review)(personas)
        pushed = {"reviewer": await reviewer.receive_from(RECEIVE_TIMEOUT)}
        pushed["outsider"] = await outsider.receive_from(RECEIVE_TIMEOUT)
        await database_sync_to_async(do_decide_review)(review.public_id, personas.reviewer, False, "no")
        pushed["after"] = await reviewer.receive_from(RECEIVE_TIMEOUT)
        await reviewer.disconnect()
        await outsider.disconnect()
        return pushed

    pushed = asyncio.run(scenario())

    assert 'id="pending-reviews"' in pushed["reviewer"] and 'hx-swap-oob="true"' in pushed["reviewer"]
    assert "ALTER TABLE invoices" in pushed["reviewer"]
    assert 'id="pending-reviews"' in pushed["outsider"] and "ALTER TABLE invoices" not in pushed["outsider"]
    assert "ALTER TABLE invoices" not in pushed["after"]  # decided: no longer pending


def test_it_coalesces_a_burst_of_announcements_into_one_push(personas):
    reviews = [request_review(personas) for _ in range(5)]

    async def scenario():
        reviewer = feed(personas.reviewer)
        await reviewer.connect()
        await aannounce([feed_message("review", id=str(review.public_id)) for review in reviews])
        first = await reviewer.receive_from(RECEIVE_TIMEOUT)
        quiet = await reviewer.receive_nothing(0.5)
        await reviewer.disconnect()
        return first, quiet

    first, quiet = asyncio.run(scenario())

    assert all(str(review.public_id) in first for review in reviews)
    assert quiet


def test_it_refuses_an_anonymous_visitor():
    async def scenario():
        return await feed(AnonymousUser()).connect()

    connected, code = asyncio.run(scenario())

    assert connected is False and code == 4401


def test_it_closes_the_feed_of_a_deactivated_user(personas):
    async def scenario():
        reviewer = feed(personas.reviewer)
        await reviewer.connect()
        personas.reviewer.is_active = False
        await database_sync_to_async(personas.reviewer.save)()
        await database_sync_to_async(request_review)(personas)
        return await reviewer.receive_output(RECEIVE_TIMEOUT)

    output = asyncio.run(scenario())

    assert output == {"type": "websocket.close", "code": 4401}
