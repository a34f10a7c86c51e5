"""`manage.py connections add|list|trust-host`: register upstreams without putting secrets in argv."""

import asyncio
import os
from pathlib import Path

import asyncssh
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections.actions import do_create_connection
from connections.management.command_output import format_table, validation_message
from connections.models import Connection
from connections.protocols.ssh.upstream import UpstreamRefused, fetch_host_key
from connections.ssh_actions import do_create_ssh_connection, do_pin_host_key
from connections.ssh_directory import key_fingerprint


class Command(BaseCommand):
    help = "Register and list upstream connections."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="{add,list,trust-host}")
        add = subcommands.add_parser("add", help="Register an upstream database or SSH host.")
        add.add_argument("name", help="The connection's name; clients put it in dbname= (or as the SSH user).")
        add.add_argument("--kind", default=Connection.Kind.POSTGRES, choices=Connection.Kind.values)
        add.add_argument("--host", required=True, help="Upstream host name or address.")
        add.add_argument("--port", type=int, help="Upstream port (default 5432, or 22 for SSH).")
        add.add_argument("--database", help="Upstream database name (PostgreSQL).")
        add.add_argument("--user", required=True, help="Upstream user name.")
        add.add_argument(
            "--password-env",
            metavar="VAR",
            help="Name of the environment variable that holds the upstream password.",
        )
        add.add_argument("--tls", default=Connection.TlsMode.REQUIRE, choices=Connection.TlsMode.values)
        add.add_argument("--tls-ca-file", metavar="PATH", help="PEM CA bundle to verify the upstream with.")
        add.add_argument("--retention-days", type=int, metavar="N", help="Days to keep recordings.")
        add.add_argument("--key-file", metavar="PATH", help="SSH: the private key the gateway logs in with.")
        add.add_argument("--known-host", metavar="KEY", help='SSH: the host key to pin, "ssh-ed25519 AAAA...".')
        add.add_argument("--allow-forwarding", default="", metavar="HOST:PORT,...", help="SSH: ssh -L destinations.")
        add.add_argument(
            "--allow-remote-forwarding",
            default="",
            metavar="HOST:PORT,...",
            help="SSH: addresses ssh -R may have the host listen on (PORT may be *).",
        )
        add.add_argument("--allow-agent-forwarding", action="store_true", help="SSH: allow ssh -A.")
        add.add_argument("--allow-x11-forwarding", action="store_true", help="SSH: allow ssh -X and -Y.")
        add.add_argument("--record-file-content", action="store_true", help="SSH: keep sftp/scp file content.")
        subcommands.add_parser("list", help="List connections (never their secrets).")
        trust = subcommands.add_parser("trust-host", help="Fetch and pin an SSH connection's host key.")
        trust.add_argument("name")
        trust.add_argument(
            "--expect", metavar="SHA256:...", help="Pin only if the host presents the key of this fingerprint."
        )

    def handle(self, *args, subcommand: str, **options) -> None:
        if subcommand == "add":
            self.add_ssh(options) if options["kind"] == Connection.Kind.SSH else self.add(options)
        elif subcommand == "trust-host":
            self.trust_host(options)
        else:
            self.list()

    def add(self, options: dict) -> None:
        if not options["database"] or not options["password_env"]:
            raise CommandError("a PostgreSQL connection needs --database and --password-env")
        password = read_password_env(options["password_env"])
        tls_ca_pem = read_ca_file(options["tls_ca_file"]) if options["tls_ca_file"] else ""
        try:
            connection = do_create_connection(
                name=options["name"],
                kind=options["kind"],
                host=options["host"],
                port=5432 if options["port"] is None else options["port"],
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

    def add_ssh(self, options: dict) -> None:
        try:
            connection = do_create_ssh_connection(
                name=options["name"],
                host=options["host"],
                port=22 if options["port"] is None else options["port"],
                username=options["user"],
                private_key=read_text_file(options["key_file"], "key file") if options["key_file"] else "",
                password=read_password_env(options["password_env"]) if options["password_env"] else "",
                known_host=options["known_host"] or "",
                allow_forwarding=options["allow_forwarding"],
                allow_remote_forwarding=options["allow_remote_forwarding"],
                allow_agent_forwarding=options["allow_agent_forwarding"],
                allow_x11_forwarding=options["allow_x11_forwarding"],
                record_file_content=options["record_file_content"],
                retention_days=options["retention_days"],
            )
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from None
        pinned = "host key pinned"
        if not connection.known_host:
            pinned = f"no host key yet: run connections trust-host {connection.name}"
        self.stdout.write(
            f"Added connection {connection.name}: ssh {connection.username}@{connection.host}:{connection.port}, "
            f"{pinned}, recordings kept {connection.retention_days} days."
        )

    def trust_host(self, options: dict) -> None:
        connection = Connection.objects.filter(name=options["name"], kind=Connection.Kind.SSH).first()
        if connection is None:
            raise CommandError(f"no SSH connection named {options['name']!r}")
        try:
            host_key = asyncio.run(fetch_host_key(connection.host, connection.port))
        except (UpstreamRefused, OSError, TimeoutError, asyncssh.Error) as exc:
            raise CommandError(f"could not fetch the host key of {connection.host}:{connection.port}: {exc}") from None
        fingerprint = key_fingerprint(host_key)
        if options["expect"] and options["expect"] != fingerprint:
            raise CommandError(f"{connection.host}:{connection.port} presented {fingerprint}, not {options['expect']}")
        previous = connection.known_host
        try:
            do_pin_host_key(connection, host_key)
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from None
        change = "unchanged" if previous == connection.known_host else "pinned"
        self.stdout.write(f"{connection.name}: host key {host_key.split()[0]} {fingerprint} {change}.")

    def list(self) -> None:
        connections = list(Connection.objects.all())
        if not connections:
            self.stdout.write("No connections. Add one with: manage.py connections add NAME ...")
            return
        rows = [
            [
                c.name,
                c.kind,
                f"{c.host}:{c.port}/{c.database}" if c.kind == Connection.Kind.POSTGRES else f"{c.host}:{c.port}",
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
    return read_text_file(path, "TLS CA file")


def read_text_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {what} {path}: {exc}") from None
