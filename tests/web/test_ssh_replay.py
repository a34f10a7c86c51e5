"""The SSH replay page: activity rows beside the player, channels, the truncation notice, casts and live rows.

Recordings are real files written by the recording writer, with the event
shapes the SSH engine records (connections/protocols/ssh/).
"""

import json
import re
import uuid

import pytest

from recordings.actions import recording_file
from recordings.models import Session
from recordings.replay import cast_lines, live_rows
from recordings.ssh_replay import ROW_LIMIT, read_activity, ssh_summary

SHA = "ab12cd34ef56" + "0" * 52
MIB = 1 << 20


def exec_session() -> list[tuple[str, object]]:
    """One exec channel (no PTY) allowed, an sftp upload with stats around it, a forward, a denied exec."""
    return [
        ("upstream", {"host": "app.internal", "port": 22, "user": "deploy"}),
        ("channel", {"ch": 1, "type": "exec", "command": "uname -a"}),
        ("command", {"ch": 1, "text": "uname -a", "source": "exec"}),
        ("policy", {"ch": 1, "action": "allow", "rule": "default", "message": "allowed"}),
        ("o", "Linux app 6.1.0\n"),
        ("exit", {"ch": 1, "status": 0}),
        ("channel", {"ch": 2, "type": "sftp"}),
        ("file", {"ch": 2, "op": "stat", "path": "/srv", "status": "ok"}),
        ("file", {"ch": 2, "op": "stat", "path": "/srv/app.tar", "status": "no such file"}),
        (
            "file",
            {
                "ch": 2,
                "op": "write",
                "path": "/srv/app.tar",
                "status": "ok",
                "bytes": 100 * MIB,
                "sha256": SHA,
                "sequential": True,
                "flags": ["write", "creat", "trunc"],
            },
        ),
        ("file", {"ch": 2, "op": "rename", "path": "/srv/app.tar", "to": "/srv/app-1.tar", "status": "ok"}),
        ("file", {"ch": 2, "op": "remove", "path": "/etc/passwd", "status": "permission denied", "message": "EACCES"}),
        (
            "transfer",
            {"ch": 2, "protocol": "sftp", "bytes_up": 100 * MIB, "bytes_down": 120, "files": 1, "skipped_packets": 0},
        ),
        ("forward", {"ch": 3, "host": "127.0.0.1", "port": 5432}),
        ("forward_closed", {"ch": 3, "host": "127.0.0.1", "port": 5432, "bytes_up": 8, "bytes_down": 14}),
        ("forward_refused", {"host": "10.0.0.9", "port": 25}),
        ("request_refused", {"request": "agent"}),
        ("channel", {"ch": 4, "type": "exec", "command": "rm -rf /srv"}),
        ("command", {"ch": 4, "text": "rm -rf /srv", "source": "exec"}),
        ("policy", {"ch": 4, "action": "deny", "rule": "no-rm", "message": "recursive deletes are not allowed"}),
        ("exit", {"ch": 4, "status": 126}),
        ("closed", {"reason": "the client closed the connection"}),
    ]


def two_shells() -> list[tuple[str, object]]:
    """A shell on channel 1 and a second one with a PTY of its own on channel 3 (channel 2 is an sftp)."""
    return [
        ("channel", {"ch": 1, "type": "shell", "term": "xterm", "width": 100, "height": 30}),
        ("r", "100x30"),
        ("o", "one$ "),
        ("i", "ls\r"),
        ("command", {"ch": 1, "text": "ls", "source": "shell"}),
        ("channel", {"ch": 2, "type": "sftp"}),
        ("channel", {"ch": 3, "type": "shell", "term": "xterm-256color", "width": 132, "height": 43}),
        ("r:3", "132x43"),
        ("o:3", "three$ "),
        ("i:3", "id\r"),
        ("o:3", "uid=1000(deploy)\r\n"),
        ("r:3", "90x20"),
        ("o", "README.md\r\n"),
        ("exit", {"ch": 3, "status": 0}),
        ("exit", {"ch": 1, "signal": "TERM", "core_dumped": False}),
    ]


def page(client, user, session, query: str = "") -> str:
    client.force_login(user)
    response = client.get(f"/sessions/{session.public_id}/{query}")
    assert response.status_code == 200
    return response.content.decode()


def cast(client, session, query: str = "") -> tuple[dict, list[list]]:
    response = client.get(f"/sessions/{session.public_id}/cast{query}")
    assert response.status_code == 200 and response.streaming
    header, *events = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    return header, events


def without_tokens(response) -> str:
    """The page without its CSRF tokens, which differ on every render."""
    return re.sub(r'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]+', r"\1", response.content.decode())


def activity_rows(html: str) -> list[str]:
    """The activity rows' detail cells, as text."""
    return [re.sub(r"\s+", " ", cell).strip() for cell in re.findall(r'class="activity-summary"[^>]*>(.*?)</td>', html)]


# --- the activity rows -----------------------------------------------------------------


def test_it_reads_the_non_terminal_events_as_one_line_rows(record_session):
    session = record_session(exec_session(), kind="ssh")

    activity = read_activity(recording_file(session))

    assert [(row.channel, row.kind, row.summary) for row in activity.rows] == [
        (None, "upstream", "connected to deploy@app.internal:22"),
        (1, "exec", "exec: uname -a"),
        (1, "policy", "policy allow default: allowed"),
        (1, "exit", "exit 0"),
        (2, "sftp", "sftp session opened"),
        (2, "file", f"write /srv/app.tar {100 * MIB} B (100.0 MiB) sha256 {SHA[:16]}…"),
        (2, "file", "rename /srv/app.tar → /srv/app-1.tar"),
        (2, "file", "remove /etc/passwd — permission denied: EACCES"),
        (2, "transfer", f"sftp: 1 files ↑{100 * MIB} B (100.0 MiB) ↓120 B"),
        (3, "forward", "forward 127.0.0.1:5432 opened"),
        (3, "forward", "forward 127.0.0.1:5432 ↑8 B ↓14 B"),
        (None, "forward", "forward 10.0.0.9:25 refused"),
        (None, "refused", "agent forwarding (ssh -A) asked for and refused: not allowed on this connection"),
        (4, "exec", "exec: rm -rf /srv"),
        (4, "policy", "policy deny no-rm: recursive deletes are not allowed"),
        (4, "exit", "exit 126"),
        (None, "closed", "closed: the client closed the connection"),
        (None, "end", "session ended (statements 2, errors 0, bytes_from_client 120, bytes_to_client 480)"),
    ]
    tones = {row.summary: row.tone for row in activity.rows}
    assert tones["policy deny no-rm: recursive deletes are not allowed"] == "danger"
    assert tones["remove /etc/passwd — permission denied: EACCES"] == "danger" and tones["exit 126"] == "warn"
    assert activity.rows[5].title == f"sha256 {SHA}"
    assert activity.hidden_stats == 2 and not activity.more and not activity.truncated
    assert [(channel.number, channel.label) for channel in activity.channels] == [(1, "exec: uname -a")]


def test_it_shows_the_stats_it_hides_when_asked(record_session):
    session = record_session(exec_session(), kind="ssh")

    activity = read_activity(recording_file(session), show_stats=True)

    stats = [row.summary for row in activity.rows if row.summary.startswith("stat ")]
    assert stats == ["stat /srv", "stat /srv/app.tar — no such file"]
    assert activity.hidden_stats == 0


def test_it_keeps_an_exec_command_that_differs_from_its_channel(record_session):
    events = [
        ("channel", {"ch": 1, "type": "exec", "command": "echo ********"}),
        ("command", {"ch": 1, "text": "echo ********", "source": "exec"}),
        ("command", {"ch": 1, "text": "sudo -i", "source": "shell"}),
        ("command", {"ch": 2, "text": "ls", "source": "exec"}),
    ]
    session = record_session(events, kind="ssh")

    rows = read_activity(recording_file(session)).rows

    assert [row.summary for row in rows][:3] == ["exec: echo ********", "shell: sudo -i", "exec: ls"]


def test_it_lists_the_activity_beside_the_player(client, personas, record_session):
    session = record_session(exec_session(), kind="ssh")

    html = page(client, personas.reviewer, session)

    assert f'data-cast-src="/sessions/{session.public_id}/cast"' in html
    assert "vendor/asciinema-player/asciinema-player.min.js" in html
    rows = activity_rows(html)
    assert "exec: uname -a" in rows and "forward 127.0.0.1:5432 ↑8 B ↓14 B" in rows
    assert "policy deny no-rm: recursive deletes are not allowed" in rows
    assert f"write /srv/app.tar {100 * MIB} B (100.0 MiB) sha256 {SHA[:16]}…" in rows
    assert not any(row.startswith("stat ") for row in rows)
    assert "2 file stats hidden" in html and "stats=1" in html
    assert 'class="channel-tabs"' not in html and "Recording truncated" not in html
    assert "Export CSV" not in html


def test_it_lists_the_stats_on_the_page_when_asked(client, personas, record_session):
    session = record_session(exec_session(), kind="ssh")

    html = page(client, personas.reviewer, session, "?stats=1")

    assert "stat /srv/app.tar — no such file" in activity_rows(html)
    assert "Hide file stats" in html and "file stats hidden" not in html


def test_it_escapes_what_the_agent_sent(client, personas, record_session):
    events = [("command", {"ch": 1, "text": "echo <script>alert(1)</script>", "source": "shell"})]
    session = record_session(events, kind="ssh")

    html = page(client, personas.reviewer, session)

    assert "shell: echo &lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html


def test_it_keeps_a_long_command_on_one_row(record_session):
    script = "set -e\n" + "echo step\n" * 100
    session = record_session([("channel", {"ch": 1, "type": "exec", "command": script})], kind="ssh")

    (row, _end) = read_activity(recording_file(session)).rows

    assert "\n" not in row.summary and row.summary.startswith("exec: set -e ↵ echo step ↵ ")
    assert len(row.summary) == 300 and row.summary.endswith("…")
    assert row.title.count("echo step") == 100


# --- truncation --------------------------------------------------------------------------


def test_it_says_when_the_terminal_recording_was_truncated(client, personas, record_session):
    events = [("o", "x" * 1000), ("truncated", {"limit_bytes": 64 * MIB}), ("command", {"ch": 1, "text": "ls"})]
    session = record_session(events, kind="ssh")

    html = page(client, personas.reviewer, session)
    activity = read_activity(recording_file(session))

    assert 'class="alert warn"' in html and "Recording truncated at 64 MiB" in html
    assert "terminal recording stopped at 64 MiB (the session&#x27;s cap)" in html
    assert activity.truncated and activity.truncated_limit == 64 * MIB and activity.truncated_t is not None


def test_it_says_a_fractional_cap_as_such(client, personas, record_session):
    session = record_session([("truncated", {"limit_bytes": MIB // 2})], kind="ssh")

    assert "Recording truncated at 0.5 MiB" in page(client, personas.reviewer, session)


# --- channels --------------------------------------------------------------------------------


def test_it_offers_a_selector_for_several_terminal_channels(client, personas, record_session):
    session = record_session(two_shells(), kind="ssh")

    first = page(client, personas.reviewer, session)
    third = page(client, personas.reviewer, session, "?channel=3")

    assert 'class="channel-tabs"' in first
    assert re.search(r'href="\?channel=1"\s+aria-current="page"', first)
    assert 'href="?channel=3"' in first and "#3 shell" in first and "#2 sftp" not in first
    assert f'data-cast-src="/sessions/{session.public_id}/cast"' in first
    assert f'data-cast-src="/sessions/{session.public_id}/cast?channel=3"' in third
    assert re.search(r'href="\?channel=3"\s+aria-current="page"', third)


def test_it_lists_only_channels_with_terminal_data(record_session):
    session = record_session(two_shells(), kind="ssh")

    channels = read_activity(recording_file(session)).channels

    assert [(channel.number, channel.type, channel.term) for channel in channels] == [
        (1, "shell", "xterm"),
        (3, "shell", "xterm-256color"),
    ]


def test_it_casts_the_chosen_channel_with_its_own_size(client, personas, record_session):
    session = record_session(two_shells(), kind="ssh")
    client.force_login(personas.reviewer)

    header, events = cast(client, session, "?channel=3")
    first_header, first_events = cast(client, session)

    assert (header["version"], header["width"], header["height"]) == (2, 132, 43)
    assert [event[1:] for event in events] == [
        ["r", "132x43"],
        ["o", "three$ "],
        ["i", "id\r"],
        ["o", "uid=1000(deploy)\r\n"],
        ["r", "90x20"],
    ]
    assert (first_header["width"], first_header["height"]) == (100, 30)
    assert [event[1:] for event in first_events] == [
        ["r", "100x30"],
        ["o", "one$ "],
        ["i", "ls\r"],
        ["o", "README.md\r\n"],
    ]
    assert all(len(event) == 3 for event in events + first_events)


def test_it_gives_an_exec_without_a_pty_carriage_returns(record_session):
    events = [("channel", {"ch": 1, "type": "exec", "command": "ls"}), ("o", "a\nb\r\nc\n")]
    session = record_session(events, kind="ssh")

    header, *lines = [json.loads(line) for line in cast_lines(recording_file(session))]

    assert (header["width"], header["height"]) == (80, 24)  # the header's: no PTY, no size of its own
    assert [line[1:] for line in lines] == [["o", "a\r\nb\r\nc\r\n"]]


def test_it_casts_an_unknown_channel_as_an_empty_terminal(client, personas, record_session):
    session = record_session(two_shells(), kind="ssh")
    client.force_login(personas.reviewer)

    header, events = cast(client, session, "?channel=9")

    assert header["version"] == 2 and events == []


def test_it_says_when_a_session_recorded_no_terminal(client, personas, record_session):
    events = [("channel", {"ch": 1, "type": "sftp"}), ("file", {"ch": 1, "op": "read", "path": "/a", "status": "ok"})]
    session = record_session(events, kind="ssh")

    html = page(client, personas.reviewer, session)

    assert "No terminal data was recorded" in html and "data-cast-src" not in html
    assert "read /a" in activity_rows(html)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "²", "", "1 ", "99999999999"])
@pytest.mark.parametrize("suffix", ["", "cast"])
def test_it_gives_a_bad_channel_a_404(client, personas, record_session, value, suffix):
    session = record_session(two_shells(), kind="ssh")
    client.force_login(personas.reviewer)

    assert client.get(f"/sessions/{session.public_id}/{suffix}", {"channel": value}).status_code == 404


@pytest.mark.parametrize("suffix", ["?channel=3", "cast?channel=3", "?stats=1"])
def test_it_gives_outsiders_the_same_404_as_for_a_missing_session(client, personas, record_session, suffix):
    session = record_session(two_shells(), kind="ssh")
    client.force_login(personas.outsider)

    forbidden = client.get(f"/sessions/{session.public_id}/{suffix}")
    missing = client.get(f"/sessions/{uuid.uuid4()}/{suffix}")

    assert forbidden.status_code == missing.status_code == 404
    assert without_tokens(forbidden) == without_tokens(missing)
    client.force_login(personas.requester)  # its own session, but it may not view sessions
    assert client.get(f"/sessions/{session.public_id}/{suffix}").status_code == 404


def test_it_shows_a_live_ssh_session_by_live_watch_alone(client, personas, record_session):
    session = record_session(two_shells(), kind="ssh", status=Session.Status.LIVE)

    html = page(client, personas.reviewer, session)

    assert "ws-connect=" in html and "data-cast-src" not in html and "activity-table" not in html


# --- big recordings ----------------------------------------------------------------------------


def test_it_reads_a_big_recording_up_to_its_row_limit_and_still_sees_its_end(client, personas, record_session):
    events: list[tuple[str, object]] = [("channel", {"ch": 1, "type": "shell", "term": "xterm", "width": 80})]
    for n in range(50_000):
        events.append(("o", f"line {n} of tail -f\r\n"))
        if n % 20 == 0:
            events.append(("file", {"ch": 2, "op": "read", "path": f"/logs/{n}", "status": "ok", "bytes": 7}))
            events.append(("file", {"ch": 2, "op": "stat", "path": f"/logs/{n}", "status": "ok"}))
    events += [("o:2", "second\r\n"), ("truncated", {"limit_bytes": MIB})]
    session = record_session(events, kind="ssh")

    activity = read_activity(recording_file(session))
    html = page(client, personas.reviewer, session)
    header, cast_events = cast(client, session)

    assert len(activity.rows) == ROW_LIMIT and activity.rows[-1].summary == f"read /logs/{(ROW_LIMIT - 2) * 20} 7 B"
    assert activity.not_shown == 2_500 - (ROW_LIMIT - 1) + 2  # the other reads, truncated and end
    assert activity.hidden_stats == 2_500
    assert activity.truncated and activity.channel_numbers == [1, 2]
    assert html.count('<tr id="event-') == ROW_LIMIT
    assert "503 more events not shown" in html and "Recording truncated at 1 MiB" in html
    assert len(cast_events) == 50_000 and cast_events[-1][1:] == ["o", "line 49999 of tail -f\r\n"]


# --- live watch --------------------------------------------------------------------------------


def test_it_describes_ssh_events_in_live_watch():
    events = [
        (1, 0.1, "command", {"ch": 1, "text": "uname -a", "source": "exec"}),
        (2, 0.2, "exit", {"ch": 1, "status": 0}),
        (3, 0.3, "file", {"ch": 2, "op": "write", "path": "/srv/a.tar", "status": "ok", "bytes": 12, "sha256": SHA}),
        (4, 0.4, "forward_closed", {"ch": 3, "host": "127.0.0.1", "port": 5432, "bytes_up": 8, "bytes_down": 14}),
        (5, 0.5, "forward_refused", {"remote": True, "host": "0.0.0.0", "port": 8080}),
        (6, 0.6, "truncated", {"limit_bytes": 64 * MIB}),
        (7, 0.7, "upstream_failed", {"reason": "connection refused"}),
        (8, 0.8, "o:2", "\x1b[1mbold\x1b[0m second$ "),
        (9, 0.9, "i:2", "ls\r"),
        (10, 1.0, "r:2", "100x30"),
        (11, 1.1, "exit", {"ch": 2, "signal": "KILL", "core_dumped": True, "reason": "host dropped"}),
        (12, 1.2, "request_refused", {"request": "x11", "ch": 2}),
    ]

    html = live_rows(events)

    assert html.count('<tr id="event-') == 11 and "100x30" not in html
    for text in (
        "#1 exec: uname -a",
        "#1 exit 0",
        f"#2 write /srv/a.tar 12 B sha256 {SHA[:16]}…",
        "#3 forward 127.0.0.1:5432 ↑8 B ↓14 B",
        "remote forward (ssh -R) 0.0.0.0:8080 refused",
        "#2 X11 forwarding (ssh -X) asked for and refused: not allowed on this connection",
        "terminal recording stopped at 64 MiB",
        "upstream failed: connection refused",
        "output #2",
        "input #2",
        "bold second$ ",
        "#2 killed by signal KILL, core dumped (host dropped)",
    ):
        assert text in html, text
    assert "\x1b" not in html
    assert '<span class="pill danger">upstream</span>' in html and '<span class="pill warn">truncated</span>' in html


def test_it_describes_remote_agent_and_x11_forwarding():
    events = [
        (1, 0.1, "channel", {"ch": 1, "type": "exec", "command": "xterm", "x11": True, "agent": True}),
        (2, 0.2, "listen", {"remote": True, "host": "127.0.0.1", "port": 43123}),
        (3, 0.3, "forward", {"ch": 2, "host": "127.0.0.1", "port": 43123, "remote": True, "from": "127.0.0.1:5050"}),
        (4, 0.4, "forward_closed", {"ch": 2, "host": "127.0.0.1", "port": 43123, "remote": True, "bytes_up": 3}),
        (5, 0.5, "forward_failed", {"ch": 3, "host": "127.0.0.1", "port": 43123, "remote": True}),
        (6, 0.6, "listen_failed", {"remote": True, "host": "0.0.0.0", "port": 22, "reason": "Port forwarding failed"}),
        (7, 0.7, "agent", {"use": 1}),
    ]

    html = live_rows(events)

    for text in (
        "#1 exec: xterm (X11 forwarded, agent forwarded)",
        "the host listens on 127.0.0.1:43123 for the client (ssh -R)",
        "#2 remote forward (ssh -R) 127.0.0.1:43123 opened from 127.0.0.1:5050",
        "#2 remote forward (ssh -R) 127.0.0.1:43123 ↑3 B ↓? B",
        "#3 remote forward (ssh -R) 127.0.0.1:43123 failed: the client could not open it",
        "the host could not listen on 0.0.0.0:22 (ssh -R): Port forwarding failed",
        "the host used the client&#x27;s forwarded SSH agent",
    ):
        assert text in html, text


@pytest.mark.parametrize("data", [None, "text", 5, {"unexpected": "shape"}, {"ch": "x", "bytes": "many"}])
@pytest.mark.parametrize("kind", ["file", "exit", "forward_closed", "channel", "transfer", "listen", "mystery"])
def test_it_summarizes_odd_ssh_event_data_without_failing(kind, data):
    summary = ssh_summary(kind, data)

    assert summary.label and isinstance(summary.text, str)
    assert live_rows([(1, 0.0, kind, data)]).count('<tr id="event-') == 1


def test_it_skips_a_torn_last_line(record_session):
    session = record_session(exec_session()[:4], kind="ssh", status=Session.Status.LIVE)
    with recording_file(session).open("ab") as handle:
        handle.write(b'[0.5,"file",{"ch":2,"op":"wri')

    rows = read_activity(recording_file(session)).rows

    assert [row.kind for row in rows] == ["upstream", "exec", "policy"]
