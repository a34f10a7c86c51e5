"""Everything that changes sessions and their recordings goes through here.

Recordings are immutable: a session is opened, sealed once (when it ends,
or by crash recovery) and, after its retention, purged. Nothing edits a
recording or its seal.
"""

import contextlib
import datetime
import json
import logging
import uuid
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connections.models import Connection, ServiceAccount
from gateway_site.broadcast import NODES_GROUP, announce_on_commit, feed_message
from recordings.access import access_session
from recordings.chain import Problem, VerifyResult, chain_seed, verify_file
from recordings.models import Session
from recordings.signing import SigningKeyMissing, sign_seal, verify_seal
from recordings.writer import RecordingWriter

logger = logging.getLogger(__name__)

END_LINE_TAIL_BYTES = 4096  # an "end" event line is short
COUNTER_FIELDS = ("statements", "errors", "bytes_from_client", "bytes_to_client")
FINAL_STATUSES = frozenset({Session.Status.ENDED, Session.Status.INTERRUPTED, Session.Status.TERMINATED})


def recordings_root() -> Path:
    """The directory all recording paths are relative to."""
    return Path(settings.GATEHOUSE_RECORDINGS_DIR).resolve()


def recording_file(session: Session) -> Path:
    """The absolute path of a session's recording; refuses paths that leave the recordings directory."""
    root = recordings_root()
    path = (root / session.recording_path).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"recording path {session.recording_path!r} is outside {root}")
    return path


def open_session(
    *,
    connection: Connection,
    account: ServiceAccount | None,
    actor: str,
    client_addr: str,
    application_name: str,
    kind: str = "postgres",
) -> tuple[Session, RecordingWriter]:
    """Start recording a session: one INSERT, and the recording's header line on disk.

    The header is written here (we are on a sync thread already) so that a
    session that crashes before its first flush still leaves a verifiable
    file. Returns the live Session and its writer, to register with the
    node's RecordingFlusher.
    """
    now = timezone.now()
    public_id = uuid.uuid4()
    session = Session(
        public_id=public_id,
        connection=connection,
        account=account,
        actor=actor[:150],
        client_addr=client_addr[:64],
        application_name=application_name[:64],
        node=settings.GATEHOUSE_NODE_ID,
        started_at=now,
        retain_until=now + datetime.timedelta(days=connection.retention_days),
        recording_path=f"{now:%Y/%m/%d}/{public_id}.jsonl",
    )
    path = recording_file(session)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    writer = RecordingWriter(path, str(public_id), _header_meta(session, kind))
    writer.write_header()
    try:
        session.save(force_insert=True)
    except Exception:
        # No row, no recording: do not leave an orphan file behind.
        path.unlink(missing_ok=True)
        raise
    _announce_session(session.public_id, Session.Status.LIVE)
    return session, writer


def _announce_session(public_id, status: str) -> None:
    # Ids only: each page re-reads what its user may see.
    announce_on_commit(feed_message("session", id=str(public_id), status=status))


def _header_meta(session: Session, kind: str) -> dict:
    return {
        "session": str(session.public_id),
        "actor": session.actor,
        "account": session.account.name if session.account else None,
        "connection": session.connection.name,
        "kind": kind,
        "client_addr": session.client_addr,
        "node": session.node,
        "application_name": session.application_name,
        "started_at": session.started_at.isoformat(),
    }


def seal_session(writer: RecordingWriter, *, status: str, counters: dict[str, int]) -> bool:
    """Sign a finished recording and close its session row, in one UPDATE.

    Only a live session is sealed; returns False (and changes nothing) if it
    was already sealed, for example by crash recovery on another start.
    """
    if status not in FINAL_STATUSES:
        raise ValueError(f"cannot seal a session as {status!r}")
    unknown = set(counters) - set(COUNTER_FIELDS)
    if unknown:
        raise ValueError(f"unknown counters: {', '.join(sorted(unknown))}")
    if not writer.finished:
        raise RuntimeError("flush the writer to the end before sealing it")
    seal = sign_seal(writer.session_id, writer.chain_head, writer.line_count)
    updated = Session.objects.filter(public_id=writer.session_id, status=Session.Status.LIVE).update(
        status=status,
        ended_at=timezone.now(),
        chain_head=writer.chain_head,
        line_count=writer.line_count,
        seal=seal,
        search_text=writer.search_text,
        **{name: int(counters.get(name, 0)) for name in COUNTER_FIELDS},
    )
    if not updated:
        logger.warning("Session %s was not live any more; its seal was left as it was", writer.session_id)
    else:
        _announce_session(writer.session_id, status)
    return bool(updated)


async def aseal_session(writer: RecordingWriter, *, status: str, counters: dict[str, int]) -> bool:
    """`seal_session` for async callers."""
    return await sync_to_async(seal_session)(writer, status=status, counters=counters)


async def seal_finished_writer(writer: RecordingWriter) -> None:
    """RecordingFlusher's on_finished: seal with the status and counters given to `writer.close`.

    Counters other than the Session fields stay in the recording's "end" event only.
    """
    counters = {name: value for name, value in writer.end_counters.items() if name in COUNTER_FIELDS}
    status = writer.end_status or Session.Status.ENDED
    if status not in FINAL_STATUSES:
        # Still seal it: an unsealed session would only be caught at the next restart.
        logger.warning("Session %s closed with unknown status %r; sealing it as ended", writer.session_id, status)
        status = Session.Status.ENDED
    await aseal_session(writer, status=status, counters=counters)


class SessionNotLive(ValueError):
    """A request to end a session that has ended already."""


def do_terminate_session(user, session_public_id: str, reason: str = "") -> Session:
    """Ask the node holding a live session to end it now; its recording then says who ended it, when and why.

    Needs `review` on the session's connection. Raises Session.DoesNotExist
    (one message) when the session is missing or `user` may not end it, and
    SessionNotLive when it has ended already.
    """
    session = access_session(user, session_public_id, action="review")
    if session.status != Session.Status.LIVE:
        raise SessionNotLive(f"session {session.public_id} has already {session.status}")
    request_session_end([str(session.public_id)], by=user.get_username(), reason=reason or "ended by a reviewer")
    session.refresh_from_db()
    return session


@transaction.atomic
def request_session_end(session_public_ids: list[str], *, by: str, reason: str) -> int:
    """Mark live sessions as being ended by `by` and tell every node to end them; returns how many were live.

    The node holding each one closes both sides and records a "terminated"
    event; its seal then sets the status. For the gateway's own reasons (an
    expired access grant) as much as for a reviewer's.
    """
    live = Session.objects.filter(public_id__in=session_public_ids, status=Session.Status.LIVE)
    ids = [str(public_id) for public_id in live.values_list("public_id", flat=True)]
    live.update(terminated_by=by[:150], terminate_reason=reason[:200])
    for public_id in ids:
        message = {"type": "session.terminate", "session": public_id, "by": by, "reason": reason}
        announce_on_commit((NODES_GROUP, message))
    logger.info("asked the gateway nodes to end %d session(s) for %s: %s", len(ids), by, reason)
    return len(ids)


def mark_interrupted_sessions() -> int:
    """At gateway start: seal every session still `live` as `interrupted`.

    Their gateway died without sealing them. An incomplete last line (a
    write cut short) is cut off, and the chain over what remains is signed,
    so what was written still verifies. A session whose "end" event made it
    to disk keeps the status it ended with. Returns how many were sealed.

    Only this node's sessions (settings.GATEHOUSE_NODE_ID): other nodes
    sharing the database may be serving theirs right now.
    """
    marked = 0
    live = Session.objects.filter(status=Session.Status.LIVE, node=settings.GATEHOUSE_NODE_ID)
    for session in live.iterator():
        head, count, ended_at, status = _recover_recording(session)
        seal = sign_seal(session.public_id, head, count)
        marked += Session.objects.filter(pk=session.pk, status=Session.Status.LIVE).update(
            status=status, ended_at=ended_at, chain_head=head, line_count=count, seal=seal
        )
    if marked:
        logger.warning("Marked %d sessions interrupted (the gateway stopped without ending them)", marked)
    return marked


def _recover_recording(session: Session) -> tuple[str, int, datetime.datetime, str]:
    """(chain head, line count, last write time, status) of what verifies in a dead session's file.

    The status is `interrupted`, unless the session had already written its
    "end" event and only its seal was lost: then the status it ended with.
    """
    interrupted = Session.Status.INTERRUPTED
    try:
        path = recording_file(session)
        result = verify_file(session.public_id, path)
    except (OSError, ValueError) as error:
        logger.error("Recording of interrupted session %s is unreadable: %s", session.public_id, error)
        return chain_seed(session.public_id).hex(), 0, timezone.now(), interrupted
    ended_at = datetime.datetime.fromtimestamp(path.stat().st_mtime, tz=datetime.UTC)
    if result.problem is Problem.INCOMPLETE:
        with path.open("r+b") as handle:
            handle.truncate(result.valid_bytes)
        logger.warning("Cut an incomplete last line from %s", path)
    elif not result.ok:
        # Not a crash artefact: sign what verifies and let `verify` name the bad line.
        logger.error("Recording of session %s is damaged: %s", session.public_id, result.describe())
    status = _recorded_end_status(path, result.valid_bytes) if result.ok else None
    return result.chain_head, result.line_count, ended_at, status or interrupted


def _recorded_end_status(path: Path, valid_bytes: int) -> str | None:
    """The status of the recording's "end" event if it is the last verified line."""
    start = max(0, valid_bytes - END_LINE_TAIL_BYTES)
    with path.open("rb") as handle:
        handle.seek(start)
        last_line = handle.read(valid_bytes - start).rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        _t, kind, data, *_link = json.loads(last_line)
    except (ValueError, TypeError):
        return None
    status = data.get("status") if kind == "end" and isinstance(data, dict) else None
    return status if status in FINAL_STATUSES else None


def verify_session(session: Session) -> VerifyResult:
    """Check a session's recording against its seal.

    Detects edited, deleted and reordered lines (naming the first bad line),
    a cut tail or extra lines (line count or head differ from the seal), a
    missing file and a forged seal. For a live session it checks the lines
    written so far and says that it is not sealed yet.
    """
    try:
        result = verify_file(session.public_id, recording_file(session))
    except FileNotFoundError:
        return _failure(Problem.MISSING_FILE, f"recording file {session.recording_path} is missing")
    except (OSError, ValueError) as error:
        return _failure(Problem.MISSING_FILE, f"recording file cannot be read: {error}")
    if session.status == Session.Status.LIVE:
        return _verify_live(result)
    seal_problem = _check_seal(session)
    if seal_problem is not None:
        return _failure(Problem.BAD_SEAL, seal_problem)
    if not result.ok:
        return result
    return _compare_with_seal(session, result)


def _verify_live(result: VerifyResult) -> VerifyResult:
    # The writer may be mid-append: a last line without its newline is normal.
    if result.ok or result.problem is Problem.INCOMPLETE:
        reason = f"live session, not sealed yet: {result.line_count} lines so far verify"
        return VerifyResult(
            True, result.line_count, result.chain_head, result.valid_bytes, None, Problem.UNSEALED, reason
        )
    return result


def _check_seal(session: Session) -> str | None:
    if not session.seal or not session.chain_head:
        return "the session ended but its recording was never sealed"
    try:
        valid = verify_seal(session.public_id, session.chain_head, session.line_count, session.seal)
    except SigningKeyMissing as error:
        return f"cannot check the seal: {error}"
    if not valid:
        return "the seal's signature does not match its chain head and line count (forged seal)"
    return None


def _compare_with_seal(session: Session, result: VerifyResult) -> VerifyResult:
    """Compare a chain that verifies with what the seal says it should be."""
    sealed = session.line_count
    if result.line_count < sealed:
        reason = f"recording ends at line {result.line_count} but the seal covers {sealed} lines"
        return _failure(Problem.TRUNCATED, reason, result, bad_line=result.line_count + 1)
    if result.line_count > sealed:
        reason = f"lines after the end of the seal (the seal covers {sealed} lines)"
        return _failure(Problem.EXTRA_LINES, reason, result, bad_line=sealed + 1)
    if result.chain_head != session.chain_head:
        reason = "the chain head differs from the sealed one: the recording was rewritten"
        return _failure(Problem.HEAD_MISMATCH, reason, result)
    return result


def _failure(
    problem: Problem,
    reason: str,
    result: VerifyResult | None = None,
    bad_line: int | None = None,
) -> VerifyResult:
    count = result.line_count if result else 0
    head = result.chain_head if result else ""
    valid_bytes = result.valid_bytes if result else 0
    return VerifyResult(False, count, head, valid_bytes, bad_line, problem, reason)


def purge_expired(*, dry_run: bool) -> list[Session]:
    """Delete the recordings and rows of sessions past retention.

    Never touches a live session, one under legal hold, or one whose
    `retain_until` is still ahead. Each deletion re-checks those conditions
    under a row lock, so a legal hold set meanwhile wins. With `dry_run`,
    only returns what would go.
    """
    now = timezone.now()
    expired = Session.objects.filter(retain_until__lt=now, legal_hold=False).exclude(status=Session.Status.LIVE)
    candidates = list(expired.select_related("connection").order_by("started_at"))
    if dry_run:
        return candidates
    return [session for session in candidates if _purge_one(session, now)]


def _purge_one(session: Session, now: datetime.datetime) -> bool:
    try:
        with transaction.atomic():
            locked = (
                Session.objects.select_for_update()
                .filter(pk=session.pk, retain_until__lt=now, legal_hold=False)
                .exclude(status=Session.Status.LIVE)
            )
            if locked.first() is None:
                return False
            path = recording_file(session)
            path.unlink(missing_ok=True)
            locked.delete()
    except (OSError, ValueError) as error:
        logger.error("Could not purge session %s: %s", session.public_id, error)
        return False
    _remove_empty_parents(path)
    logger.info("Purged session %s (retention ended %s)", session.public_id, session.retain_until)
    return True


def _remove_empty_parents(path: Path) -> None:
    """Drop the YYYY/MM/DD directories a purge emptied (never the root itself)."""
    root = recordings_root()
    directory = path.parent
    while directory != root and directory.is_relative_to(root):
        with contextlib.suppress(OSError):
            directory.rmdir()
        if directory.exists():
            return
        directory = directory.parent
