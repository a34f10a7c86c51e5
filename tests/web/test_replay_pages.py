"""Replay, live watch, exports and the terminal cast, through the session funnel, with real recordings."""

import csv
import io
import json
import re
import uuid

import pytest
from guardian.shortcuts import assign_perm

from recordings.actions import recording_file
from recordings.models import Session
from tests.web.conftest import make_user
from tests.web.recorded_events import (
    CANARY_CARD,
    CANARY_EMAIL,
    DELETE,
    MASKED_CARD,
    MASKED_EMAIL,
    many_statements,
    session_events,
)


def without_tokens(response) -> str:
    """The page without its CSRF tokens, which differ on every render."""
    return re.sub(r'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]+', r"\1", response.content.decode())


def get(client, user, path):
    client.force_login(user)
    return client.get(path)


def test_it_replays_a_session_with_its_values_masked(client, personas, record_session):
    session = record_session(session_events())

    response = get(client, personas.reviewer, f"/sessions/{session.public_id}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert CANARY_EMAIL not in html and CANARY_CARD not in html
    assert MASKED_EMAIL in html and MASKED_CARD in html
    assert "WHERE email = &#x27;********&#x27;" in html
    assert DELETE in html and "<code>7</code>" in html
    assert "review approved by alice" in html and "known cleanup" in html
    assert 'class="pill deny"' in html and "dropping tables is not allowed" in html
    assert "vacuum suggested" in html and "the client closed the connection" in html


def test_it_shows_the_sessions_facts_and_that_its_recording_verifies(client, personas, record_session):
    session = record_session(session_events())

    html = get(client, personas.reviewer, f"/sessions/{session.public_id}/").content.decode()

    for fact in ("agent:ci-bot", "warehouse", "10.0.0.7:51544", "psql", session.node, "120\xa0bytes"):
        assert fact in html
    assert '<span class="pill ok"' in html and ">verified<" in html
    assert "/ws/sessions/" not in html and "Terminate" not in html


def test_it_says_when_a_recording_was_tampered_with(client, personas, record_session):
    session = record_session(session_events())
    path = recording_file(session)
    path.write_bytes(path.read_bytes().replace(b"DROP TABLE customers", b"SELECT 1 -- innocent"))

    html = get(client, personas.reviewer, f"/sessions/{session.public_id}/").content.decode()

    assert '<span class="pill danger">failed</span>' in html
    assert "chain link mismatch" in html


def test_it_pages_a_long_timeline(client, personas, record_session):
    session = record_session(many_statements(230))
    client.force_login(personas.reviewer)

    first = client.get(f"/sessions/{session.public_id}/").content.decode()
    second = client.get(f"/sessions/{session.public_id}/?page=2").content.decode()

    assert 'id="statement-200"' in first and 'id="statement-201"' not in first and 'href="?page=2"' in first
    assert 'id="statement-201"' in second and 'id="statement-230"' in second and 'href="?page=1"' in second
    assert client.get(f"/sessions/{session.public_id}/?page=zero").status_code == 200


def test_it_watches_a_live_session_and_offers_terminate_to_reviewers(client, personas, record_session):
    session = record_session(many_statements(2), status=Session.Status.LIVE)

    html = get(client, personas.reviewer, f"/sessions/{session.public_id}/").content.decode()

    assert f'hx-ext="ws" ws-connect="/ws/sessions/{session.public_id}/watch/"' in html
    assert '<tbody id="live-events"></tbody>' in html
    assert f'action="/sessions/{session.public_id}/terminate"' in html
    assert 'name="csrfmiddlewaretoken"' in html and "data-confirm=" in html
    assert ">verifies so far<" in html


def test_it_lets_a_watcher_without_review_watch_but_not_terminate(client, personas, record_session):
    session = record_session(status=Session.Status.LIVE)
    watcher = make_user("wendy")
    assign_perm("connections.view_sessions", watcher, personas.warehouse)

    html = get(client, watcher, f"/sessions/{session.public_id}/").content.decode()

    assert "ws-connect=" in html and "/terminate" not in html


def test_it_plays_a_terminal_session_in_asciinema_player(client, personas, record_session):
    session = record_session([("o", "$ "), ("i", "id\r"), ("o", "uid=1000(ci)\r\n")], kind="ssh")
    client.force_login(personas.reviewer)

    html = client.get(f"/sessions/{session.public_id}/").content.decode()
    cast = client.get(f"/sessions/{session.public_id}/cast")

    assert f'data-cast-src="/sessions/{session.public_id}/cast"' in html
    assert "vendor/asciinema-player/asciinema-player.min.js" in html
    assert cast.status_code == 200
    header, *events = [json.loads(line) for line in b"".join(cast.streaming_content).splitlines()]
    assert header["version"] == 2
    assert events[2][1:] == ["o", "uid=1000(ci)\r\n"]


def test_it_has_no_cast_for_a_database_session(client, personas, record_session):
    session = record_session(session_events())

    assert get(client, personas.reviewer, f"/sessions/{session.public_id}/cast").status_code == 404


def test_it_exports_statements_as_json_lines(client, personas, record_session):
    session = record_session(session_events())

    response = get(client, personas.reviewer, f"/sessions/{session.public_id}/statements.jsonl")

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == f'attachment; filename="session-{session.public_id}-statements.jsonl"'
    body = b"".join(response.streaming_content).decode()
    rows = [json.loads(line) for line in body.splitlines()]
    assert [(row["n"], row["policy_action"], row["review_status"]) for row in rows] == [
        (1, "", ""),
        (2, "allow", "approved"),
        (3, "deny", ""),
    ]
    assert rows[0]["rows"] == 1 and rows[0]["duration_ms"] == 0.84 and rows[1]["params"] == ["7"]
    assert CANARY_EMAIL not in body


def test_it_exports_statements_as_csv(client, personas, record_session):
    session = record_session(session_events() + [("sql", {"n": 4, "text": "=HYPERLINK(1)"})])

    response = get(client, personas.reviewer, f"/sessions/{session.public_id}/statements.csv")

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].endswith('statements.csv"')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["n"] for row in rows] == ["1", "2", "3", "4"]
    assert rows[1]["params"] == '["7"]' and rows[1]["review_by"] == "alice"
    assert rows[2]["error"].startswith("42501: Gatehouse denied")
    assert rows[3]["text"] == "'=HYPERLINK(1)"  # a spreadsheet must not run it


@pytest.mark.parametrize("suffix", ["", "statements.jsonl", "statements.csv", "cast"])
def test_it_gives_outsiders_the_same_404_as_for_a_missing_session(client, personas, record_session, suffix):
    session = record_session(session_events(), kind="ssh" if suffix == "cast" else "postgres")
    client.force_login(personas.outsider)

    forbidden = client.get(f"/sessions/{session.public_id}/{suffix}")
    missing = client.get(f"/sessions/{uuid.uuid4()}/{suffix}")
    malformed = client.get(f"/sessions/not-a-uuid/{suffix}")

    assert forbidden.status_code == missing.status_code == malformed.status_code == 404
    assert without_tokens(forbidden) == without_tokens(missing) == without_tokens(malformed)
    client.force_login(personas.requester)  # connects and reviews there, but may not view sessions
    assert client.get(f"/sessions/{session.public_id}/{suffix}").status_code == 404


def test_it_says_when_the_recording_file_is_missing(client, personas, record_session):
    session = record_session(session_events())
    recording_file(session).unlink()
    client.force_login(personas.reviewer)

    page = client.get(f"/sessions/{session.public_id}/")

    assert page.status_code == 200 and b"recording file of this session is missing" in page.content
    assert client.get(f"/sessions/{session.public_id}/statements.csv").status_code == 404


def test_it_refuses_terminate_by_get(client, personas, record_session):
    session = record_session(status=Session.Status.LIVE)

    assert get(client, personas.reviewer, f"/sessions/{session.public_id}/terminate").status_code == 405


def test_it_shows_copy_output_and_nothing_for_a_result_without_rows(client, personas, record_session):
    events = [
        ("sql", {"n": 1, "text": "COPY orders TO STDOUT"}),
        ("result", {"n": 1, "copy": [["1\tshipped\n"], ["2\topen\n"]], "copy_bytes": 20, "tag": "COPY 2"}),
        ("sql", {"n": 2, "text": "DELETE FROM orders"}),
        ("result", {"n": 2, "ms": 1.0, "tag": "DELETE 2"}),
    ]
    session = record_session(events)

    html = get(client, personas.reviewer, f"/sessions/{session.public_id}/").content.decode()

    assert "1\tshipped\n2\topen\n" in html
    second = html[html.index('id="statement-2"') :]
    assert "result-table" not in second[: second.index("</article>")]
