"""`manage.py agents add|token|revoke|grant|list|add-key|remove-key|keys`: service accounts and their credentials."""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, Q
from django.utils import timezone

from connections.access import connections_for
from connections.actions import do_create_service_account, do_grant_connect, do_issue_token, do_revoke_tokens
from connections.durations import DurationError, parse_duration
from connections.management.command_output import format_table, validation_message
from connections.models import Connection, ServiceAccount
from connections.ssh_actions import do_add_agent_key, do_remove_agent_key


class Command(BaseCommand):
    help = "Manage service accounts (agents), their tokens and their grants."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(
            dest="subcommand", required=True, metavar="{add,token,revoke,grant,list,add-key,remove-key,keys}"
        )
        add = subcommands.add_parser("add", help="Create a service account.")
        add.add_argument("name", help="The agent's name; clients put it in user=.")
        add.add_argument("--description", default="", help="What this agent is for.")
        token = subcommands.add_parser("token", help="Issue a new token; it is printed once.")
        token.add_argument("name")
        token.add_argument(
            "--ttl",
            default=None,
            help=f"Lifetime such as 30m, 24h or 7d (default {settings.GATEHOUSE_TOKEN_DEFAULT_TTL}).",
        )
        revoke = subcommands.add_parser("revoke", help="Revoke all tokens of an agent.")
        revoke.add_argument("name")
        grant = subcommands.add_parser("grant", help="Let an agent connect to a connection.")
        grant.add_argument("name")
        grant.add_argument("connection")
        subcommands.add_parser("list", help="List agents.")
        add_key = subcommands.add_parser("add-key", help="Let an agent log in to the SSH gateway with a public key.")
        add_key.add_argument("name")
        add_key.add_argument("public_key_file", metavar="PUBKEY_FILE", help="An OpenSSH public key file (*.pub).")
        remove_key = subcommands.add_parser("remove-key", help="Stop an agent logging in with a key.")
        remove_key.add_argument("name")
        remove_key.add_argument("fingerprint", metavar="SHA256:...")
        keys = subcommands.add_parser("keys", help="List an agent's SSH keys.")
        keys.add_argument("name")

    def handle(self, *args, subcommand: str, **options) -> None:
        handler = getattr(self, f"handle_{subcommand.replace('-', '_')}")
        try:
            handler(options)
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from None

    def handle_add(self, options: dict) -> None:
        account = do_create_service_account(options["name"], options["description"])
        self.stdout.write(f"Added agent {account.name}. Issue it a token with: manage.py agents token {account.name}")

    def handle_token(self, options: dict) -> None:
        account = get_agent(options["name"])
        ttl = parse_ttl(options["ttl"])
        access_token, token = do_issue_token(account, ttl)
        expires = access_token.expires_at.isoformat(timespec="seconds")
        self.stdout.write(f"New token for agent {account.name}: prefix {access_token.prefix}, expires {expires}.")
        self.stdout.write("It is shown only this once; only its hash is stored:")
        self.stdout.write(token)

    def handle_revoke(self, options: dict) -> None:
        account = get_agent(options["name"])
        count = do_revoke_tokens(account)
        noun = "token" if count == 1 else "tokens"
        self.stdout.write(f"Revoked {count} {noun} of agent {account.name}.")

    def handle_grant(self, options: dict) -> None:
        account = get_agent(options["name"])
        try:
            connection = Connection.objects.get(name=options["connection"])
        except Connection.DoesNotExist:
            raise CommandError(
                f"no connection named {options['connection']!r}; see: manage.py connections list"
            ) from None
        do_grant_connect(account, connection)
        self.stdout.write(f"Agent {account.name} may now connect to {connection.name}.")

    def handle_list(self, options: dict) -> None:
        now = timezone.now()
        live = Q(tokens__revoked=False, tokens__expires_at__gt=now)
        accounts = ServiceAccount.objects.select_related("user").annotate(live_tokens=Count("tokens", filter=live))
        if not accounts:
            self.stdout.write("No agents. Add one with: manage.py agents add NAME")
            return
        rows = [
            [
                account.name,
                str(account.live_tokens),
                ",".join(connections_for(account.user, "connect").values_list("name", flat=True)) or "-",
                account.description,
            ]
            for account in accounts
        ]
        self.stdout.write(format_table(["NAME", "LIVE TOKENS", "CONNECTIONS", "DESCRIPTION"], rows))

    def handle_add_key(self, options: dict) -> None:
        account = get_agent(options["name"])
        path = options["public_key_file"]
        try:
            text = Path(path).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read public key file {path}: {exc}") from None
        key = do_add_agent_key(account, text)
        self.stdout.write(f"Agent {account.name} may now log in over SSH with key {key.fingerprint}.")

    def handle_remove_key(self, options: dict) -> None:
        account = get_agent(options["name"])
        if not do_remove_agent_key(account, options["fingerprint"]):
            raise CommandError(f"agent {account.name} has no key {options['fingerprint']}")
        self.stdout.write(f"Removed key {options['fingerprint']} of agent {account.name}.")

    def handle_keys(self, options: dict) -> None:
        account = get_agent(options["name"])
        rows = [
            [key.fingerprint, key.public_key.split()[0], key.comment, key.created_at.isoformat(timespec="seconds")]
            for key in account.ssh_keys.all()
        ]
        if not rows:
            self.stdout.write(f"Agent {account.name} has no SSH keys. Add one with: manage.py agents add-key")
            return
        self.stdout.write(format_table(["FINGERPRINT", "TYPE", "COMMENT", "ADDED"], rows))


def get_agent(name: str) -> ServiceAccount:
    try:
        return ServiceAccount.objects.select_related("user").get(name=name)
    except ServiceAccount.DoesNotExist:
        raise CommandError(f"no agent named {name!r}; create it with: manage.py agents add {name}") from None


def parse_ttl(text: str | None) -> timedelta:
    if text is None:
        try:
            return parse_duration(settings.GATEHOUSE_TOKEN_DEFAULT_TTL)
        except DurationError as exc:
            raise CommandError(f"GATEHOUSE_TOKEN_DEFAULT_TTL: {exc}") from None
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise CommandError(f"--ttl: {exc}") from None
