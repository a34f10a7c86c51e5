"""`manage.py policies apply|show|export|list`: guardrail and masking policies, kept in git as YAML files."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections.actions import NO_POLICY_MEANING, PolicyChanges, do_apply_policies
from connections.management.command_output import format_table
from connections.models import Connection, Policy
from connections.policy.policy_file import MAX_FILE_BYTES, PolicyEntry, PolicyFileError, policy_file_yaml
from connections.policy_store import spec_of


class Command(BaseCommand):
    help = "Apply, show and list guardrail and masking policies."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="{apply,show,export,list}")
        apply = subcommands.add_parser("apply", help="Apply a policy file, all or nothing.")
        apply.add_argument("file", help="The YAML policy file, or - to read standard input.")
        apply.add_argument("--dry-run", action="store_true", help="Check the file and print what would change.")
        show = subcommands.add_parser("show", help="Print a connection's effective policy as a file apply accepts.")
        show.add_argument("connection")
        subcommands.add_parser("export", help="Print every policy as one file apply accepts.")
        subcommands.add_parser("list", help="List policies and the connections they guard.")

    def handle(self, *args, subcommand: str, **options) -> None:
        getattr(self, f"handle_{subcommand}")(options)

    def handle_apply(self, options: dict) -> None:
        source = options["file"]
        data = read_policy_file(source)
        try:
            changes = do_apply_policies(data, dry_run=options["dry_run"])
        except PolicyFileError as exc:
            for line in exc.lines(source):
                self.stderr.write(line)
            count = len(exc.problems)
            raise CommandError(f"{source}: {count} problem{'s' if count != 1 else ''}; nothing was applied") from None
        self.stdout.write(describe_changes(changes, dry_run=options["dry_run"]))

    def handle_show(self, options: dict) -> None:
        name = options["connection"]
        connection = Connection.objects.select_related("policy").filter(name=name).first()
        if connection is None:
            raise CommandError(f"no connection named {name!r}; see: manage.py connections list")
        policy = connection.policy
        if policy is None:
            self.stdout.write(
                f"# Connection {name} has no policy: {NO_POLICY_MEANING}.\n"
                "# To guard it, list it under connections: in a policy file and run: manage.py policies apply FILE"
            )
            return
        header = (
            f"Effective policy of connection {name}: {policy.name}, "
            f"updated {policy.updated_at.isoformat(timespec='seconds')}.\n"
            "Applying this file as it is changes nothing: manage.py policies apply FILE"
        )
        self.stdout.write(policy_file_yaml([policy_entry(policy)], header), ending="")

    def handle_export(self, options: dict) -> None:
        policies = list(Policy.objects.all())
        header = "Every policy of this Gatehouse; apply with: manage.py policies apply FILE"
        self.stdout.write(policy_file_yaml([policy_entry(policy) for policy in policies], header), ending="")

    def handle_list(self, options: dict) -> None:
        policies = list(Policy.objects.prefetch_related("connections"))
        if not policies:
            self.stdout.write("No policies. Write a policy file and run: manage.py policies apply FILE")
        else:
            rows = []
            for policy in policies:
                spec = spec_of(policy)
                attached = ",".join(connection.name for connection in policy.connections.all()) or "-"
                updated = policy.updated_at.isoformat(timespec="seconds")
                rows.append(
                    [policy.name, attached, str(len(spec.guardrails)), str(len(spec.masking)), spec.default, updated]
                )
            headers = ["NAME", "CONNECTIONS", "GUARDRAILS", "MASKING", "DEFAULT", "UPDATED"]
            self.stdout.write(format_table(headers, rows))
        unguarded = list(Connection.objects.filter(policy=None).values_list("name", flat=True))
        if unguarded:
            self.stdout.write(f"Connections without a policy ({NO_POLICY_MEANING}): {', '.join(unguarded)}")


def policy_entry(policy: Policy) -> PolicyEntry:
    """A stored policy as a file entry that lists every connection it guards, so applying it is a no-op."""
    connections = tuple(policy.connections.order_by("name").values_list("name", flat=True))
    return PolicyEntry(spec_of(policy), policy.description, connections)


def read_policy_file(source: str) -> bytes:
    """The file's bytes (or standard input's for -), refusing anything over the size limit before reading it all."""
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with Path(source).open("rb") as stream:
                data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"cannot read policy file {source}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CommandError(f"{source}: the file is larger than {MAX_FILE_BYTES} bytes (1 MiB); split it")
    return data


def describe_changes(changes: PolicyChanges, *, dry_run: bool) -> str:
    """What an apply did, one line per change; a dry run says what it would do."""
    lines = changes.lines()
    if not changes.changed:
        lines.append("Nothing to change.")
    elif dry_run:
        lines.insert(0, "Dry run: nothing was changed. Applying the file would do this:")
    return "\n".join(lines)
