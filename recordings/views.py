"""Sessions pages: the list, replay, live watch, statement exports, the terminal cast, and terminate.

Every view finds its session through the funnel (recordings.access), so
a session one may not see is the same 404 as a missing one.
"""

import csv
import datetime
import logging
import re
from dataclasses import dataclass

import orjson
from django import forms
from django.contrib import messages
from django.core import signing
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from connections.access import connections_for
from recordings.access import access_session, sessions_for
from recordings.actions import SessionNotLive, do_terminate_session, recording_file, verify_session
from recordings.models import Session
from recordings.replay import EXPORT_FIELDS, cast_lines, export_rows, read_page, recording_kind
from recordings.ssh_replay import read_activity

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
CURSOR_SALT = "gatehouse.sessions.cursor"
MAX_TIMELINE_PAGE = 1_000_000
TERMINATE_REASON_MAX = 200
VERIFY_ON_VIEW_MAX_BYTES = 16 << 20
# An SSH channel number as ?channel= takes it: a positive integer, ASCII digits only.
CHANNEL_NUMBER = re.compile(r"[1-9][0-9]{0,8}")
# Spreadsheets run a cell that starts with these as a formula; the CSV export defuses them.
FORMULA_STARTS = ("=", "+", "@", "\t", "\r")


class SessionFilters(forms.Form):
    """The sessions list's filters, all optional; started_to includes its whole day."""

    connection = forms.CharField(required=False, max_length=63)
    agent = forms.CharField(required=False, max_length=63)
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Session.Status.choices])
    started_from = forms.DateField(required=False)
    started_to = forms.DateField(required=False)
    q = forms.CharField(required=False, max_length=200, strip=True)

    def apply(self, sessions: QuerySet[Session], connection_ids: dict[str, int]) -> QuerySet[Session]:
        """`sessions` narrowed by the filters; `connection_ids` are the visible connections' ids by name."""
        data = self.cleaned_data
        if data["connection"]:
            # By id, not by a join on the name: an equality lets the (connection, -started_at) index give the order.
            sessions = sessions.filter(connection_id=connection_ids.get(data["connection"], 0))
        if data["agent"]:
            sessions = sessions.filter(account__name=data["agent"])
        if data["status"]:
            sessions = sessions.filter(status=data["status"])
        if data["started_from"]:
            sessions = sessions.filter(started_at__gte=_day_start(data["started_from"]))
        if data["started_to"]:
            sessions = sessions.filter(started_at__lt=_day_start(data["started_to"] + datetime.timedelta(days=1)))
        if data["q"]:
            sessions = sessions.filter(search_text__icontains=data["q"])
        return sessions


def _day_start(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Cursor:
    """A position in the list ordered by (-started_at, -id): the rows "older" or "newer" than one session.

    It travels signed, so a client can neither forge a position nor read
    more than a time and a row number into it.
    """

    direction: str
    started_at: datetime.datetime
    id: int

    def encode(self) -> str:
        return signing.dumps([self.direction, self.started_at.isoformat(), self.id], salt=CURSOR_SALT)

    @classmethod
    def decode(cls, value: str) -> "Cursor | None":
        """The cursor, or None (the first page) for anything malformed or tampered with."""
        try:
            direction, started_at, row_id = signing.loads(value, salt=CURSOR_SALT)
            parsed = datetime.datetime.fromisoformat(started_at)
        except (signing.BadSignature, ValueError, TypeError):
            return None
        if direction not in ("older", "newer") or not isinstance(row_id, int) or parsed.tzinfo is None:
            return None
        return cls(direction, parsed, row_id)


def session_page(sessions: QuerySet[Session], cursor: Cursor | None) -> tuple[list[Session], str, str]:
    """One page of `sessions` by keyset, and the cursors of the newer and older pages ("" when none).

    The first page (no cursor) is the newest. One query: a page and one row
    more, to know whether another page follows.
    """
    if cursor is None:
        rows = list(sessions.order_by("-started_at", "-id")[: PAGE_SIZE + 1])
        has_newer, has_older = False, len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
    elif cursor.direction == "older":
        # Each leading bound restates its OR, so that an index range on started_at serves it.
        before = Q(started_at__lt=cursor.started_at) | Q(started_at=cursor.started_at, id__lt=cursor.id)
        older_rows = sessions.filter(before, started_at__lte=cursor.started_at).order_by("-started_at", "-id")
        rows = list(older_rows[: PAGE_SIZE + 1])
        has_newer, has_older = True, len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
    else:
        after = Q(started_at__gt=cursor.started_at) | Q(started_at=cursor.started_at, id__gt=cursor.id)
        newer_rows = sessions.filter(after, started_at__gte=cursor.started_at).order_by("started_at", "id")
        rows = list(newer_rows[: PAGE_SIZE + 1])
        has_newer, has_older = len(rows) > PAGE_SIZE, True
        rows = rows[:PAGE_SIZE][::-1]
    newer = Cursor("newer", rows[0].started_at, rows[0].id).encode() if rows and has_newer else ""
    older = Cursor("older", rows[-1].started_at, rows[-1].id).encode() if rows and has_older else ""
    return rows, newer, older


def session_list(request: HttpRequest) -> HttpResponse:
    filters = SessionFilters(request.GET)
    connection_ids = dict(connections_for(request.user, "view_sessions").values_list("name", "id"))
    context = {"filters": filters, "connections": sorted(connection_ids), "statuses": Session.Status.choices}
    if not filters.is_valid():
        return render(request, "recordings/session_list.html", context | {"sessions": []}, status=400)
    visible = filters.apply(sessions_for(request.user), connection_ids).prefetch_related("connection", "account")
    cursor = Cursor.decode(request.GET.get("cursor", ""))
    sessions, newer, older = session_page(visible, cursor)
    query = request.GET.copy()
    query.pop("cursor", None)
    context |= {"sessions": sessions, "newer": newer, "older": older, "query": query.urlencode(), "paged": cursor}
    return render(request, "recordings/session_list.html", context)


def _visible_session(request: HttpRequest, public_id: str, action: str = "view_sessions") -> Session:
    try:
        return access_session(request.user, public_id, action)
    except Session.DoesNotExist:
        raise Http404("No such session.") from None


def _may_terminate(request: HttpRequest, session: Session) -> bool:
    if session.status != Session.Status.LIVE:
        return False
    try:
        access_session(request.user, session.public_id, "review")
    except Session.DoesNotExist:
        return False
    return True


def _should_verify(request: HttpRequest, path) -> bool:
    if request.GET.get("verify"):
        return True
    try:
        return path.stat().st_size <= VERIFY_ON_VIEW_MAX_BYTES
    except OSError:
        return True  # verification reports the missing file


def _page_number(request: HttpRequest) -> int:
    try:
        return min(MAX_TIMELINE_PAGE, max(1, int(request.GET.get("page", "1"))))
    except ValueError:
        return 1


def session_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    """Replay: the session's facts and chain check, then its statements (or its terminal cast, or live watch)."""
    session = _visible_session(request, public_id)
    path = recording_file(session)
    live = session.status == Session.Status.LIVE
    context = {
        "session": session,
        # Verifying reads the whole recording: only on request, or while it is small.
        "verification": verify_session(session) if _should_verify(request, path) else None,
        "live": live,
        "may_terminate": _may_terminate(request, session),
        "recording_missing": not path.exists(),
        "kind": recording_kind(path),
        "page": None,
    }
    # A live session is shown by live watch alone: its consumer sends what happened so far, then new events.
    if not live and not context["recording_missing"]:
        if context["kind"] == "ssh":
            context |= _terminal_context(request, session, path)
        else:
            context["page"] = read_page(path, _page_number(request))
    return render(request, "recordings/session_detail.html", context)


def _channel_number(request: HttpRequest) -> int | None:
    """The ?channel= asked for (None when absent); anything but a positive integer is a 404."""
    value = request.GET.get("channel")
    if value is None:
        return None
    if not CHANNEL_NUMBER.fullmatch(value):
        raise Http404("No such channel.")
    return int(value)


def _terminal_context(request: HttpRequest, session: Session, path) -> dict:
    """An SSH session's page: its activity rows, its terminal channels, and the player's cast for the chosen one."""
    show_stats = request.GET.get("stats") == "1"
    activity = read_activity(path, show_stats=show_stats)
    channel = _channel_number(request) or (activity.channel_numbers or [1])[0]
    cast_src = reverse("sessions:cast", args=[session.public_id])
    if channel != 1:
        cast_src += f"?channel={channel}"
    return {"activity": activity, "channel": channel, "cast_src": cast_src, "show_stats": show_stats}


def _export_response(session: Session, chunks, content_type: str, extension: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="session-{session.public_id}-statements.{extension}"'
    return response


def _recorded_session(request: HttpRequest, public_id: str) -> Session:
    session = _visible_session(request, public_id)
    if not recording_file(session).exists():
        raise Http404("The recording of this session is missing.")
    return session


def statements_jsonl(request: HttpRequest, public_id: str) -> StreamingHttpResponse:
    """Every statement of the session as one JSON object per line (EXPORT_FIELDS), streamed."""
    session = _recorded_session(request, public_id)
    rows = export_rows(recording_file(session), session.started_at)
    chunks = (orjson.dumps(row) + b"\n" for row in rows)
    return _export_response(session, chunks, "application/x-ndjson", "jsonl")


class _Line:
    """A file-like object that hands back what csv.writer writes, so each row streams as it is made."""

    def write(self, value: str) -> str:
        return value


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        value = orjson.dumps(value).decode()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def statements_csv(request: HttpRequest, public_id: str) -> StreamingHttpResponse:
    """Every statement of the session as a CSV row (EXPORT_FIELDS; params as JSON), streamed."""
    session = _recorded_session(request, public_id)
    writer = csv.writer(_Line())
    rows = export_rows(recording_file(session), session.started_at)
    header = (writer.writerow(EXPORT_FIELDS),)
    body = (writer.writerow([_csv_cell(row[name]) for name in EXPORT_FIELDS]) for row in rows)
    chunks = (line for part in (header, body) for line in part)
    return _export_response(session, chunks, "text/csv; charset=utf-8", "csv")


def session_cast(request: HttpRequest, public_id: str) -> StreamingHttpResponse:
    """One terminal channel of a session (?channel=N, default 1) as an asciicast v2 file, for asciinema-player."""
    session = _recorded_session(request, public_id)
    path = recording_file(session)
    if recording_kind(path) != "ssh":
        raise Http404("This session has no terminal recording.")
    channel = _channel_number(request) or 1
    return StreamingHttpResponse(cast_lines(path, channel), content_type="application/x-asciicast")


@require_POST
def session_terminate(request: HttpRequest, public_id: str) -> HttpResponse:
    """End a live session from the gateway's side; needs `review` on its connection."""
    reason = request.POST.get("reason", "").strip()[:TERMINATE_REASON_MAX]
    try:
        session = do_terminate_session(request.user, public_id, reason)
    except Session.DoesNotExist:
        raise Http404("No such session.") from None
    except SessionNotLive as refusal:
        messages.error(request, str(refusal))
        return redirect("sessions:detail", public_id=public_id, permanent=False)
    logger.info("%s asked to terminate session %s", request.user.get_username(), session.public_id)
    messages.success(request, "The session is being ended.")
    return redirect("sessions:detail", public_id=session.public_id)
