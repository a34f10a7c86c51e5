"""`manage.py access request|list|grant|refuse|revoke`: just-in-time access from the command line, as on the web."""

from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from approvals.access_request_actions import (
    AccessRefused,
    access_requests_for,
    do_decide_access_request,
    do_request_access,
    do_revoke_grant,
    format_seconds,
    shown_status,
)
from approvals.models import AccessRequest
from connections.durations import DurationError, parse_duration
from connections.management.command_output import age, format_table, shorten, validation_message
from connections.management.command_users import get_user
from connections.management.commands.agents import get_agent
from connections.models import Connection

DEFAULT_LIMIT = 50


class Command(BaseCommand):
    help = "Ask for just-in-time access to a connection, and grant, refuse or revoke it, as on the web page."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(
            dest="subcommand", required=True, metavar="{request,list,grant,refuse,revoke}"
        )
        asking = subcommands.add_parser("request", help="Ask for access to a connection on behalf of an agent.")
        asking.add_argument("agent", help="The agent that needs access.")
        asking.add_argument("connection", help="The connection it needs.")
        asking.add_argument("--for", dest="duration", required=True, help="How long, e.g. 30m, 2h, 1d.")
        asking.add_argument("--reason", required=True, help="Why; reviewers read it.")
        listing = subcommands.add_parser("list", help="List access requests, newest first.")
        listing.add_argument("--pending", action="store_true", help="Only requests still waiting for a decision.")
        listing.add_argument("--as", dest="as_user", metavar="USER", help="Only requests USER may see.")
        listing.add_argument(
            "--limit", type=int, default=DEFAULT_LIMIT, help=f"At most this many (default {DEFAULT_LIMIT})."
        )
        for verb in ("grant", "refuse"):
            decide = subcommands.add_parser(verb, help=f"{verb.capitalize()} a pending request.")
            decide.add_argument("id", help="The request's id, as `access list` shows it.")
            decide.add_argument("--as", dest="as_user", metavar="USER", required=True, help="The deciding reviewer.")
            decide.add_argument("--comment", default="", help="Why; the requester sees it.")
        revoke = subcommands.add_parser("revoke", help="End an active grant now.")
        revoke.add_argument("id", help="The request's id, as `access list` shows it.")
        revoke.add_argument("--as", dest="as_user", metavar="USER", required=True, help="The revoking reviewer.")

    def handle(self, *args, subcommand: str, **options) -> None:
        try:
            if subcommand == "request":
                self.handle_request(options)
            elif subcommand == "list":
                self.handle_list(options)
            elif subcommand == "revoke":
                self.handle_revoke(options)
            else:
                self.handle_decide(options, grant=subcommand == "grant")
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from None
        except AccessRefused as exc:
            raise CommandError(str(exc)) from None

    def handle_request(self, options: dict) -> None:
        account = get_agent(options["agent"])
        try:
            seconds = int(parse_duration(options["duration"]).total_seconds())
        except DurationError as exc:
            raise CommandError(f"--for: {exc}") from None
        try:
            made = do_request_access(account.user, options["connection"], options["reason"], seconds, account=account)
        except Connection.DoesNotExist as exc:
            raise CommandError(f"{exc}; see: manage.py connections list") from None
        self.stdout.write(
            f"Access request {made.public_id}: agent {account.name} asks for {made.connection.name} "
            f"for {format_seconds(seconds)}; pending."
        )

    def handle_list(self, options: dict) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        now = timezone.now()
        if options["as_user"]:
            requests = access_requests_for(get_user(options["as_user"]))
        else:
            requests = AccessRequest.objects.select_related("connection", "requester", "account")
        if options["pending"]:
            requests = requests.filter(status=AccessRequest.Status.PENDING)
        requests = list(requests[: options["limit"]])
        if not requests:
            self.stdout.write("No pending access requests." if options["pending"] else "No access requests.")
            return
        rows = [
            [
                str(request.public_id),
                shown_status(request, now),
                request.connection.name,
                request.account.name if request.account else request.requester.username,
                format_seconds(request.duration_seconds),
                age(request.created_at, now),
                until(request),
                shorten(request.reason),
            ]
            for request in requests
        ]
        headers = ["ID", "STATUS", "CONNECTION", "REQUESTER", "FOR", "AGE", "UNTIL", "REASON"]
        self.stdout.write(format_table(headers, rows))

    def handle_decide(self, options: dict, *, grant: bool) -> None:
        user = get_user(options["as_user"])
        try:
            decided = do_decide_access_request(options["id"], user, grant, options["comment"])
        except AccessRequest.DoesNotExist as exc:
            raise CommandError(f"{exc}; see: manage.py access list --pending --as {user.username}") from None
        if decided.status == AccessRequest.Status.GRANTED:
            self.stdout.write(
                f"Access request {decided.public_id} is granted (by {decided.decided_by}) "
                f"until {utc(decided.granted_until)} UTC."
            )
        else:
            self.stdout.write(f"Access request {decided.public_id} is {decided.status} (by {decided.decided_by}).")

    def handle_revoke(self, options: dict) -> None:
        user = get_user(options["as_user"])
        try:
            revoked = do_revoke_grant(options["id"], user)
        except AccessRequest.DoesNotExist as exc:
            raise CommandError(f"{exc}; see: manage.py access list --as {user.username}") from None
        self.stdout.write(f"Access request {revoked.public_id} is revoked (by {revoked.ended_by}).")


def until(request: AccessRequest) -> str:
    """When a grant ends (or ended), to the second in UTC; "-" for a request never granted."""
    return "-" if request.granted_until is None else utc(request.granted_until)


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
