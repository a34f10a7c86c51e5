"""The sessions list: only visible sessions, filters, and keyset pages that stay cheap at 100,000 sessions."""

import datetime
import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone

from connections.actions import do_create_service_account
from recordings.models import Session

START = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


def make_sessions(connection, count: int, *, account=None, status=Session.Status.ENDED, start=START, **fields):
    """`count` session rows, one minute apart going back from `start`, without recordings (the list needs none)."""
    rows = [
        Session(
            connection=connection,
            account=account,
            actor=f"agent:{account.name}" if account else "user:someone",
            client_addr="10.0.0.7:5000",
            started_at=start - datetime.timedelta(minutes=i),
            status=status,
            retain_until=start + datetime.timedelta(days=90),
            recording_path=f"x/{i}.jsonl",
            **fields,
        )
        for i in range(count)
    ]
    return Session.objects.bulk_create(rows, batch_size=2000)


def listed(response) -> list[str]:
    return re.findall(r'href="/sessions/([0-9a-f-]{36})/"', response.content.decode())


def link(response, rel: str) -> str:
    match = re.search(rf'href="(\?[^"]*)" rel="{rel}"', response.content.decode())
    return match.group(1).replace("&amp;", "&") if match else ""


def test_it_lists_only_sessions_the_user_may_view(client, personas):
    ours = make_sessions(personas.warehouse, 3, account=personas.agent)
    theirs = make_sessions(personas.billing, 2)
    client.force_login(personas.reviewer)

    response = client.get("/sessions/")

    assert response.status_code == 200
    assert listed(response) == [str(s.public_id) for s in ours]
    client.force_login(personas.outsider)
    assert listed(client.get("/sessions/")) == [str(s.public_id) for s in theirs]
    client.force_login(personas.requester)  # may connect and review, not view sessions
    assert listed(client.get("/sessions/")) == []


def test_it_filters_by_connection_agent_status_dates_and_statement_text(client, personas, make_group):
    other_agent = do_create_service_account("etl-bot")
    by_bot = make_sessions(personas.warehouse, 2, account=personas.agent, search_text="SELECT * FROM orders")
    by_etl = make_sessions(personas.warehouse, 1, account=other_agent, start=START - datetime.timedelta(days=2))
    live = make_sessions(personas.warehouse, 1, account=other_agent, status=Session.Status.LIVE, start=START)
    with_delete = make_sessions(personas.warehouse, 1, search_text="BEGIN\nDELETE FROM Orders WHERE id = 7\nCOMMIT")
    client.force_login(personas.reviewer)

    def ids(**query) -> set[str]:
        response = client.get("/sessions/", query)
        assert response.status_code == 200
        return set(listed(response))

    def public(sessions) -> set[str]:
        return {str(s.public_id) for s in sessions}

    assert ids(agent="ci-bot") == public(by_bot)
    assert ids(agent="etl-bot", status="live") == public(live)
    assert ids(status="ended", agent="etl-bot") == public(by_etl)
    assert ids(started_from="2026-02-27", started_to="2026-02-27") == public(by_etl)
    assert ids(started_from="2026-03-01") == public(by_bot + live + with_delete)
    assert ids(q="delete from orders") == public(with_delete)
    assert ids(connection="warehouse", q="orders") == public(by_bot + with_delete)
    assert ids(connection="billing") == set()  # not the reviewer's: nothing, not an error


@pytest.mark.parametrize(
    "query", [{"status": "sleeping"}, {"started_from": "yesterday"}, {"q": "x" * 201}, {"agent": "a" * 64}]
)
def test_it_answers_bad_filters_with_400_and_the_errors(client, personas, query):
    make_sessions(personas.warehouse, 1)
    client.force_login(personas.reviewer)

    response = client.get("/sessions/", query)

    assert response.status_code == 400
    assert b'class="errorlist"' in response.content
    assert listed(response) == []


def test_it_pages_by_cursor_forwards_and_back_keeping_the_filters(client, personas):
    sessions = make_sessions(personas.warehouse, 120, account=personas.agent)
    expected = [str(s.public_id) for s in sessions]
    client.force_login(personas.reviewer)

    first = client.get("/sessions/", {"agent": "ci-bot"})
    second = client.get("/sessions/" + link(first, "next"))
    third = client.get("/sessions/" + link(second, "next"))
    back = client.get("/sessions/" + link(third, "prev"))

    assert listed(first) == expected[:50] and link(first, "prev") == ""
    assert listed(second) == expected[50:100]
    assert listed(third) == expected[100:] and link(third, "next") == ""
    assert listed(back) == expected[50:100]
    assert parse_qs(urlparse(link(second, "next")).query)["agent"] == ["ci-bot"]


def test_it_breaks_ties_in_start_time_by_row(client, personas):
    sessions = [make_sessions(personas.warehouse, 1, start=START)[0] for _ in range(75)]
    client.force_login(personas.reviewer)

    first = client.get("/sessions/")
    second = client.get("/sessions/" + link(first, "next"))

    seen = listed(first) + listed(second)
    assert sorted(seen) == sorted(str(s.public_id) for s in sessions)
    assert len(set(seen)) == 75


@pytest.mark.parametrize("cursor", ["garbage", "", "a:b:c", "W10:1tXyZ:abc", "x" * 5000])
def test_it_shows_the_first_page_for_a_malformed_cursor(client, personas, cursor):
    sessions = make_sessions(personas.warehouse, 60)
    client.force_login(personas.reviewer)

    response = client.get("/sessions/", {"cursor": cursor})

    assert response.status_code == 200
    assert listed(response) == [str(s.public_id) for s in sessions[:50]]


def test_it_refuses_a_cursor_with_a_forged_position(client, personas):
    sessions = make_sessions(personas.warehouse, 60)
    client.force_login(personas.reviewer)
    real = link(client.get("/sessions/"), "next")
    token = parse_qs(urlparse(real).query)["cursor"][0]
    payload, _, signature = token.rpartition(":")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + ":" + signature

    response = client.get("/sessions/", {"cursor": forged})

    assert listed(response) == [str(s.public_id) for s in sessions[:50]]


def test_it_lists_100000_sessions_in_a_few_queries_per_page(client, personas, django_assert_max_num_queries):
    make_sessions(personas.warehouse, 100_000, account=personas.agent)
    make_sessions(personas.billing, 1_000)
    client.force_login(personas.reviewer)
    path = "/sessions/"

    for _page in range(3):
        with django_assert_max_num_queries(6) as captured:
            response = client.get(path)
        assert response.status_code == 200
        assert len(listed(response)) == 50
        assert not any("OFFSET" in query["sql"].upper() for query in captured.captured_queries)
        path = "/sessions/" + link(response, "next")

    with django_assert_max_num_queries(6):
        filtered = client.get("/sessions/", {"agent": "ci-bot", "status": "ended", "started_from": "2026-01-01"})
    assert len(listed(filtered)) == 50


def test_it_shows_durations_and_live_sessions(client, personas):
    now = timezone.now()
    (live,) = make_sessions(personas.warehouse, 1, status=Session.Status.LIVE, start=now)
    client.force_login(personas.reviewer)

    html = client.get("/sessions/", {"status": "live"}).content.decode()

    assert f"/sessions/{live.public_id}/" in html and 'class="pill live"' in html
