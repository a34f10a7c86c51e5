"""The dashboard and its live fragments: only what the user may see, in blocks the feed can swap."""

import re

from guardian.shortcuts import assign_perm

from approvals.access_request_actions import do_request_access
from gateway_site.dashboard import live_fragments
from recordings.models import Session
from tests.web.conftest import make_user


def test_it_shows_a_reviewer_live_and_recent_sessions_and_pending_reviews(
    client, personas, record_session, request_review
):
    live = record_session(status=Session.Status.LIVE)
    ended = record_session()
    request_review("DELETE FROM orders WHERE id = 7")
    do_request_access(personas.outsider, "warehouse", "incident 4711: read the orders table", 3600)
    client.force_login(personas.reviewer)

    response = client.get("/")

    html = response.content.decode()
    assert response.status_code == 200
    assert '<div hx-ext="ws" ws-connect="/ws/feed/">' in html
    assert "incident 4711" in block(html, "pending-requests")
    live_block = block(html, "live-sessions")
    recent_block = block(html, "recent-sessions")
    assert f"/sessions/{live.public_id}/" in live_block and f"/sessions/{ended.public_id}/" not in live_block
    assert f"/sessions/{ended.public_id}/" in recent_block and f"/sessions/{live.public_id}/" not in recent_block
    assert "DELETE FROM orders WHERE id = 7" in block(html, "pending-reviews")


def test_it_shows_an_outsider_nothing_of_other_connections(client, personas, record_session, request_review):
    secret = record_session(status=Session.Status.LIVE)
    request_review("DELETE FROM payroll")
    client.force_login(personas.outsider)

    html = client.get("/").content.decode()

    assert str(secret.public_id) not in html
    assert "payroll" not in html
    assert "No session is running now." in html and "Nothing waits for a decision." in html


def test_it_renders_the_same_blocks_for_the_feed_marked_for_out_of_band_swaps(personas, record_session, request_review):
    live = record_session(status=Session.Status.LIVE)
    review = request_review()

    html = live_fragments(personas.reviewer)

    assert re.findall(r'<section id="([\w-]+)" class="card" hx-swap-oob="true">', html) == [
        "live-sessions",
        "pending-reviews",
        "recent-sessions",
        "pending-requests",
    ]
    assert str(live.public_id) in block(html, "live-sessions")
    assert f'hx-post="/reviews/{review.public_id}/decide"' in block(html, "pending-reviews")
    assert str(live.public_id) not in live_fragments(personas.outsider)


def test_it_leaves_reviews_out_for_someone_who_may_only_view_sessions(personas, request_review):
    viewer = make_user("victor")
    assign_perm("connections.view_sessions", viewer, personas.warehouse)
    request_review("DELETE FROM payroll")

    assert "payroll" not in live_fragments(viewer)


def block(html: str, element_id: str) -> str:
    """The <section> with that id (sections do not nest in these pages)."""
    start = html.index(f'<section id="{element_id}"')
    return html[start : html.index("</section>", start)]
