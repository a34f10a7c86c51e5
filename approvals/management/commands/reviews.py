"""`manage.py reviews list|approve|deny`: held statements, decided from the command line as on the web page."""

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from approvals.actions import ReviewRefused, do_decide_review
from approvals.models import Review
from approvals.review_access import shown_status
from connections.access import connections_for
from connections.management.command_output import age, format_table, shorten
from connections.management.command_users import get_user

DEFAULT_LIMIT = 50


class Command(BaseCommand):
    help = "List held statements and approve or deny them, with the same checks as the reviewer pages."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="{list,approve,deny}")
        listing = subcommands.add_parser("list", help="List reviews, newest first.")
        listing.add_argument("--pending", action="store_true", help="Only reviews still waiting for a decision.")
        listing.add_argument("--as", dest="as_user", metavar="USER", help="Only reviews USER may decide.")
        listing.add_argument(
            "--limit", type=int, default=DEFAULT_LIMIT, help=f"At most this many (default {DEFAULT_LIMIT})."
        )
        for verb in ("approve", "deny"):
            decide = subcommands.add_parser(verb, help=f"{verb.capitalize()} a held statement.")
            decide.add_argument("id", help="The review's id, as `reviews list` shows it.")
            decide.add_argument("--as", dest="as_user", metavar="USER", required=True, help="The deciding reviewer.")
            decide.add_argument("--comment", default="", help="Why; a deny's comment is shown to the client.")

    def handle(self, *args, subcommand: str, **options) -> None:
        if subcommand == "list":
            self.handle_list(options)
        else:
            self.handle_decide(options, approve=subcommand == "approve")

    def handle_list(self, options: dict) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        now = timezone.now()
        reviews = Review.objects.select_related("connection", "account")
        if options["pending"]:
            reviews = reviews.filter(status=Review.Status.PENDING, expires_at__gt=now)
        if options["as_user"]:
            reviews = reviews.filter(connection__in=connections_for(get_user(options["as_user"]), "review"))
        reviews = list(reviews[: options["limit"]])
        if not reviews:
            self.stdout.write("No pending reviews." if options["pending"] else "No reviews.")
            return
        rows = [
            [
                str(review.public_id),
                shown_status(review, now),
                review.connection.name,
                review.account.name if review.account else "-",
                review.rule,
                age(review.created_at, now),
                shorten(review.statement),
            ]
            for review in reviews
        ]
        headers = ["ID", "STATUS", "CONNECTION", "AGENT", "RULE", "AGE", "STATEMENT"]
        self.stdout.write(format_table(headers, rows))

    def handle_decide(self, options: dict, *, approve: bool) -> None:
        user = get_user(options["as_user"])
        try:
            review = do_decide_review(options["id"], user, approve, options["comment"])
        except Review.DoesNotExist as exc:
            raise CommandError(f"{exc}; see: manage.py reviews list --pending --as {user.username}") from None
        except ReviewRefused as exc:
            raise CommandError(str(exc)) from None
        if review.status == Review.Status.PENDING:
            approvals = review.decisions.filter(approve=True).count()
            self.stdout.write(
                f"Review {review.public_id} is pending: {approvals} of {review.approvals_required} approvals."
            )
        else:
            self.stdout.write(f"Review {review.public_id} is {review.status} (by {review.decided_by}).")
