"""`manage.py recordings verify|purge`: check recordings against their seals, drop expired ones."""

import datetime
import uuid

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from recordings.actions import purge_expired, verify_session
from recordings.chain import Problem
from recordings.models import Session


def format_age(age: datetime.timedelta) -> str:
    """A short age: days when there are any, else hours, else minutes."""
    if age.days >= 1:
        return f"{age.days} days"
    hours = int(age.total_seconds() // 3600)
    if hours >= 1:
        return f"{hours} hours"
    return f"{int(age.total_seconds() // 60)} minutes"


class Command(BaseCommand):
    help = "Verify session recordings against their signed seals, or purge expired ones."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="{verify,purge}")
        verify = subcommands.add_parser(
            "verify", help="Check hash chains and seals; exit 0 only if every recording verifies."
        )
        verify.add_argument("session_id", nargs="?", metavar="SESSION_ID", help="A session's public id.")
        verify.add_argument("--all", action="store_true", help="Verify every session.")
        purge = subcommands.add_parser(
            "purge", help="Delete recordings whose retention has ended (never those on legal hold)."
        )
        purge.add_argument("--dry-run", action="store_true", help="Only report what would be deleted.")

    def handle(self, *args, subcommand: str, **options) -> None:
        if subcommand == "verify":
            self.verify(options["session_id"], every=options["all"])
        else:
            self.purge(dry_run=options["dry_run"])

    def verify(self, session_id: str | None, *, every: bool) -> None:
        if every == (session_id is not None):
            raise CommandError("Give either one SESSION_ID or --all.")
        sessions = Session.objects.order_by("started_at").iterator() if every else [self.find_session(session_id)]
        checked = failed = 0
        for session in sessions:
            checked += 1
            result = verify_session(session)
            if result.ok:
                live = result.problem is Problem.UNSEALED
                lines = "line" if result.line_count == 1 else "lines"
                note = f"{result.line_count} {lines}" + (", live: not sealed yet" if live else "")
                self.stdout.write(f"OK {session.public_id} ({note})")
            else:
                failed += 1
                self.stdout.write(f"FAILED {session.public_id}: {result.describe()}")
        if not checked:
            self.stdout.write("No sessions to verify.")
        if failed:
            raise CommandError(f"{failed} of {checked} recordings failed verification.")

    def find_session(self, session_id: str) -> Session:
        try:
            public_id = uuid.UUID(session_id)
        except ValueError:
            raise CommandError(f"{session_id!r} is not a session id (a UUID).") from None
        try:
            return Session.objects.get(public_id=public_id)
        except Session.DoesNotExist:
            raise CommandError(f"No session with id {public_id}.") from None

    def purge(self, *, dry_run: bool) -> None:
        now = timezone.now()
        sessions = purge_expired(dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        for session in sessions:
            self.stdout.write(
                f"{verb} {session.public_id} ({session.actor} on {session.connection.name}, "
                f"age {format_age(now - session.started_at)}, "
                f"retention ended {session.retain_until:%Y-%m-%d %H:%M} UTC)"
            )
        noun = "recording" if len(sessions) == 1 else "recordings"
        suffix = " (dry run: nothing was deleted)" if dry_run else ""
        self.stdout.write(f"{verb} {len(sessions)} {noun}{suffix}.")
