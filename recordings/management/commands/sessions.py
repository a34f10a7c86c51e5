"""`manage.py sessions list|terminate`: live and recent sessions, and ending one as a reviewer would on its page."""

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from connections.management.command_output import age, format_table
from connections.management.command_users import get_user
from recordings.actions import SessionNotLive, do_terminate_session
from recordings.models import Session

DEFAULT_LIMIT = 50


class Command(BaseCommand):
    help = "List sessions, or end a live one (needs `review` on its connection, as on the web page)."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="{list,terminate}")
        listing = subcommands.add_parser("list", help="List sessions, newest first.")
        listing.add_argument("--live", action="store_true", help="Only sessions still running.")
        listing.add_argument(
            "--limit", type=int, default=DEFAULT_LIMIT, help=f"At most this many (default {DEFAULT_LIMIT})."
        )
        terminate = subcommands.add_parser("terminate", help="End a live session now.")
        terminate.add_argument("id", help="The session's id, as `sessions list` shows it.")
        terminate.add_argument("--as", dest="as_user", metavar="USER", required=True, help="Who ends it.")
        terminate.add_argument("--reason", default="", help="Shown to the client and kept in the recording.")

    def handle(self, *args, subcommand: str, **options) -> None:
        if subcommand == "list":
            self.handle_list(options)
        else:
            self.handle_terminate(options)

    def handle_list(self, options: dict) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        sessions = Session.objects.select_related("connection")
        if options["live"]:
            sessions = sessions.filter(status=Session.Status.LIVE)
        sessions = list(sessions[: options["limit"]])
        if not sessions:
            self.stdout.write("No live sessions." if options["live"] else "No sessions.")
            return
        now = timezone.now()
        rows = [
            [str(s.public_id), s.status, s.connection.name, s.actor, s.node, age(s.started_at, now), str(s.statements)]
            for s in sessions
        ]
        self.stdout.write(format_table(["ID", "STATUS", "CONNECTION", "ACTOR", "NODE", "AGE", "STATEMENTS"], rows))

    def handle_terminate(self, options: dict) -> None:
        user = get_user(options["as_user"])
        try:
            session = do_terminate_session(user, options["id"], options["reason"])
        except Session.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        except SessionNotLive as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Asked the gateway to end session {session.public_id} (for {session.terminated_by}).")
