"""`manage.py connections add|list`: register upstream databases without putting secrets in argv."""

import os
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections.actions import do_create_connection
from connections.management.command_output import format_table, validation_message
from connections.models import Connection


class Command(BaseCommand):
    help = "Register and list upstream connections."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="{add,list}")
        add = subcommands.add_parser("add", help="Register an upstream database.")
        add.add_argument("name", help="The connection's name; clients put it in dbname=.")
        add.add_argument("--kind", default=Connection.Kind.POSTGRES, choices=Connection.Kind.values)
        add.add_argument("--host", required=True, help="Upstream host name or address.")
        add.add_argument("--port", type=int, default=5432, help="Upstream port (default 5432).")
        add.add_argument("--database", required=True, help="Upstream database name.")
        add.add_argument("--user", required=True, help="Upstream user name.")
        add.add_argument(
            "--password-env",
            required=True,
            metavar="VAR",
            help="Name of the environment variable that holds the upstream password.",
        )
        add.add_argument("--tls", default=Connection.TlsMode.REQUIRE, choices=Connection.TlsMode.values)
        add.add_argument("--tls-ca-file", metavar="PATH", help="PEM CA bundle to verify the upstream with.")
        add.add_argument("--retention-days", type=int, metavar="N", help="Days to keep recordings.")
        subcommands.add_parser("list", help="List connections (never their secrets).")

    def handle(self, *args, subcommand: str, **options) -> None:
        if subcommand == "add":
            self.add(options)
        else:
            self.list()

    def add(self, options: dict) -> None:
        password = read_password_env(options["password_env"])
        tls_ca_pem = read_ca_file(options["tls_ca_file"]) if options["tls_ca_file"] else ""
        try:
            connection = do_create_connection(
                name=options["name"],
                kind=options["kind"],
                host=options["host"],
                port=options["port"],
                database=options["database"],
                username=options["user"],
                password=password,
                tls_mode=options["tls"],
                tls_ca_pem=tls_ca_pem,
                retention_days=options["retention_days"],
            )
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from None
        self.stdout.write(
            f"Added connection {connection.name}: {connection.kind} "
            f"{connection.host}:{connection.port}/{connection.database} as {connection.username}, "
            f"TLS {connection.tls_mode}, recordings kept {connection.retention_days} days."
        )

    def list(self) -> None:
        connections = list(Connection.objects.all())
        if not connections:
            self.stdout.write("No connections. Add one with: manage.py connections add NAME ...")
            return
        rows = [
            [
                c.name,
                c.kind,
                f"{c.host}:{c.port}/{c.database}",
                c.username,
                c.tls_mode,
                f"{c.retention_days}d",
            ]
            for c in connections
        ]
        self.stdout.write(format_table(["NAME", "KIND", "TARGET", "USER", "TLS", "RETENTION"], rows))


def read_password_env(variable: str) -> str:
    """The password from the named environment variable, so it never sits in argv or shell history."""
    password = os.environ.get(variable, "")
    if not password:
        raise CommandError(f"environment variable {variable} is unset or empty; put the upstream password in it")
    return password


def read_ca_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read TLS CA file {path}: {exc}") from None
