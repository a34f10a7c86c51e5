"""Policies end to end on a real database: `manage.py policies`, the actions, the store the gateway reads, the admin."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db.models import ProtectedError
from django.urls import reverse

from connections.actions import do_apply_policies, do_delete_policy, do_save_policy, do_set_connection_policy
from connections.models import Connection, Policy
from connections.policy.policy_file import PolicyFileError, parse_policy_body, parse_policy_file
from connections.policy.rules import PolicySpec
from connections.policy_store import policy_revision, policy_spec_for, policy_specs_for, spec_of

from .test_admin import connection_form
from .test_policy_file import ISSUE_EXAMPLE

pytestmark = pytest.mark.django_db

TWO_POLICIES = """\
policies:
  - name: prod-guard
    description: Production
    connections: [pg-main, pg-replica]
    default: allow
    guardrails:
      - name: no-drop
        match: {kind: [DROP, TRUNCATE]}
        action: deny
    masking:
      - name: secrets
        columns: ["*password*"]
  - name: staging-guard
    connections: [pg-staging]
    default: review
"""


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write(tmp_path, text: str, name: str = "policies.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture
def pg_main(make_connection):
    return make_connection("pg-main")


@pytest.fixture
def three_connections(make_connection):
    return [make_connection(name) for name in ("pg-main", "pg-replica", "pg-staging")]


def policy_of(name: str) -> str | None:
    connection = Connection.objects.select_related("policy").get(name=name)
    return connection.policy.name if connection.policy else None


# --- policies apply -----------------------------------------------------------------------------------------------


def test_it_applies_the_issue_example_and_says_what_changed(tmp_path, pg_main):
    out, _ = run("policies", "apply", write(tmp_path, ISSUE_EXAMPLE))
    assert out.splitlines() == [
        "created policy prod-guard",
        "attached connection pg-main to policy prod-guard (had no policy)",
    ]
    expected = parse_policy_file(ISSUE_EXAMPLE).policies[0].spec
    assert policy_spec_for("pg-main") == expected
    assert policy_spec_for(pg_main) == expected


def test_applying_the_same_file_twice_changes_nothing(tmp_path, three_connections):
    path = write(tmp_path, TWO_POLICIES)
    run("policies", "apply", path)
    revision = policy_revision()
    out, _ = run("policies", "apply", path)
    assert out.splitlines() == ["unchanged policy prod-guard", "unchanged policy staging-guard", "Nothing to change."]
    assert policy_revision() == revision


def test_it_updates_rules_and_moves_the_revision(tmp_path, three_connections):
    run("policies", "apply", write(tmp_path, TWO_POLICIES))
    before = policy_revision()
    staging_revision = Policy.objects.get(name="staging-guard").revision
    changed = TWO_POLICIES.replace("kind: [DROP, TRUNCATE]", "kind: [DROP]").replace("Production", "Prod")
    out, _ = run("policies", "apply", write(tmp_path, changed))
    assert out.splitlines()[0] == "updated policy prod-guard: guardrails, description"
    assert policy_revision() > before
    assert Policy.objects.get(name="staging-guard").revision == staging_revision
    assert policy_spec_for("pg-main").guardrails[0].match.kind == ("DROP",)


def test_a_bad_file_is_rejected_whole_with_every_problem(tmp_path, pg_main):
    text = TWO_POLICIES.replace("default: review", "default: sometimes").replace("pg-staging", "pg-ghost")
    path = write(tmp_path, text + "    colour: red\n")
    err = io.StringIO()
    with pytest.raises(CommandError, match="4 problems; nothing was applied"):
        call_command("policies", "apply", path, stdout=io.StringIO(), stderr=err)
    assert err.getvalue().splitlines() == [
        f"{path}:4: no connection named 'pg-replica'; see: manage.py connections list",
        f"{path}:14: no connection named 'pg-ghost'; see: manage.py connections list",
        f"{path}:15: default 'sometimes' is unknown; use one of: allow, deny, review",
        f"{path}:16: unknown key 'colour' in a policy; allowed keys: name, description, connections, default, "
        "unparseable, opaque, guardrails, masking",
    ]
    # The first policy was fine, but nothing at all was applied.
    assert not Policy.objects.exists()
    assert policy_of("pg-main") is None


def test_an_unknown_connection_is_an_error_with_its_line(tmp_path, pg_main):
    path = write(tmp_path, ISSUE_EXAMPLE.replace("[pg-main]", "[pg-main, pg-mian]"))
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 problem; nothing was applied"):
        call_command("policies", "apply", path, stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == f"{path}:3: no connection named 'pg-mian'; see: manage.py connections list\n"
    assert not Policy.objects.exists()


def test_the_file_is_authoritative_for_the_connections_of_the_policies_it_names(tmp_path, three_connections):
    run("policies", "apply", write(tmp_path, TWO_POLICIES))
    revision = Policy.objects.get(name="prod-guard").revision
    # pg-replica is no longer listed: it is detached, and the run says what that means.
    out, _ = run("policies", "apply", write(tmp_path, TWO_POLICIES.replace("[pg-main, pg-replica]", "[pg-main]")))
    assert out.splitlines() == [
        "unchanged policy prod-guard",
        "unchanged policy staging-guard",
        "detached connection pg-replica from policy prod-guard: it has no policy now, "
        "so every statement is allowed and nothing is masked",
    ]
    assert policy_of("pg-replica") is None
    assert policy_spec_for("pg-replica") is None
    assert Policy.objects.get(name="prod-guard").revision > revision


def test_without_a_connections_key_attachments_are_left_alone(tmp_path, three_connections):
    run("policies", "apply", write(tmp_path, TWO_POLICIES))
    text = "policies:\n  - name: prod-guard\n    default: deny\n"
    out, _ = run("policies", "apply", write(tmp_path, text))
    assert out.splitlines() == ["updated policy prod-guard: default, guardrails, masking, description"]
    assert [policy_of(name) for name in ("pg-main", "pg-replica", "pg-staging")] == [
        "prod-guard",
        "prod-guard",
        "staging-guard",
    ]


def test_policies_and_connections_the_file_does_not_name_are_untouched(tmp_path, three_connections):
    run("policies", "apply", write(tmp_path, TWO_POLICIES))
    staging = Policy.objects.get(name="staging-guard")
    run("policies", "apply", write(tmp_path, "policies:\n  - name: other\n    connections: []\n"))
    assert Policy.objects.get(name="staging-guard").revision == staging.revision
    assert policy_of("pg-staging") == "staging-guard"
    assert policy_of("pg-main") == "prod-guard"


def test_a_connection_moves_between_policies_without_a_detach_in_between(tmp_path, three_connections):
    run("policies", "apply", write(tmp_path, TWO_POLICIES))
    # staging-guard (first in the file now) takes pg-replica from prod-guard, which is also in the file.
    moved = """\
policies:
  - name: staging-guard
    connections: [pg-staging, pg-replica]
    default: review
  - name: prod-guard
    connections: [pg-main]
"""
    out, _ = run("policies", "apply", write(tmp_path, moved))
    assert "attached connection pg-replica to policy staging-guard (was prod-guard)" in out
    assert "detached" not in out
    assert policy_of("pg-replica") == "staging-guard"


def test_taking_a_connection_from_a_policy_outside_the_file_gives_that_policy_a_new_revision(
    tmp_path, three_connections
):
    run("policies", "apply", write(tmp_path, TWO_POLICIES))
    prod = Policy.objects.get(name="prod-guard")
    out, _ = run(
        "policies", "apply", write(tmp_path, "policies:\n  - name: replica-only\n    connections: [pg-replica]\n")
    )
    assert "attached connection pg-replica to policy replica-only (was prod-guard)" in out
    assert Policy.objects.get(name="prod-guard").revision > prod.revision


def test_a_dry_run_changes_nothing(tmp_path, pg_main):
    out, _ = run("policies", "apply", "--dry-run", write(tmp_path, ISSUE_EXAMPLE))
    assert out.splitlines() == [
        "Dry run: nothing was changed. Applying the file would do this:",
        "created policy prod-guard",
        "attached connection pg-main to policy prod-guard (had no policy)",
    ]
    assert not Policy.objects.exists()
    assert policy_of("pg-main") is None


def test_it_reads_standard_input(monkeypatch, pg_main):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(ISSUE_EXAMPLE.encode())))
    out, _ = run("policies", "apply", "-")
    assert "created policy prod-guard" in out


def test_it_refuses_missing_and_oversized_files(tmp_path):
    with pytest.raises(CommandError, match="cannot read policy file .*missing.yaml: No such file"):
        run("policies", "apply", str(tmp_path / "missing.yaml"))
    big = write(tmp_path, "policies: []\n" + "#" * (1 << 20))
    with pytest.raises(CommandError, match="larger than 1048576 bytes"):
        run("policies", "apply", big)


def test_do_apply_policies_raises_the_same_problems_as_the_parser(pg_main):
    with pytest.raises(PolicyFileError) as caught:
        do_apply_policies("policies:\n  - name: p\n    connections: [nope]\n    default: maybe\n")
    assert [str(problem) for problem in caught.value.problems] == [
        "line 3: no connection named 'nope'; see: manage.py connections list",
        "line 4: default 'maybe' is unknown; use one of: allow, deny, review",
    ]


# --- policies show / export / list -----------------------------------------------------------------------------------


def test_show_prints_a_file_that_applies_back_to_the_same_policy(tmp_path, three_connections):
    run("policies", "apply", write(tmp_path, TWO_POLICIES))
    shown, _ = run("policies", "show", "pg-replica")
    assert shown.startswith("# Effective policy of connection pg-replica: prod-guard, updated 20")
    (entry,) = parse_policy_file(shown).policies
    # It lists every connection of the policy, so applying it does not detach the others.
    assert entry.connections == ("pg-main", "pg-replica")
    assert entry.spec == policy_spec_for("pg-replica")
    assert entry.description == "Production"
    revision = policy_revision()
    out, _ = run("policies", "apply", write(tmp_path, shown, "shown.yaml"))
    assert out.splitlines()[-1] == "Nothing to change."
    assert policy_revision() == revision


def test_show_explains_a_connection_without_a_policy(pg_main):
    out, _ = run("policies", "show", "pg-main")
    assert "Connection pg-main has no policy: every statement is allowed and nothing is masked." in out
    with pytest.raises(CommandError, match="no connection named 'pg-nope'"):
        run("policies", "show", "pg-nope")


def test_export_round_trips_every_policy(tmp_path, three_connections):
    run("policies", "apply", write(tmp_path, TWO_POLICIES))
    do_save_policy(PolicySpec("unattached", default="deny"))
    exported, _ = run("policies", "export")
    assert [entry.spec.name for entry in parse_policy_file(exported).policies] == [
        "prod-guard",
        "staging-guard",
        "unattached",
    ]
    out, _ = run("policies", "apply", write(tmp_path, exported))
    assert out.splitlines()[-1] == "Nothing to change."


def test_list_shows_policies_and_the_unguarded_connections(tmp_path, three_connections, make_connection):
    assert run("policies", "list")[0].startswith("No policies.")
    run("policies", "apply", write(tmp_path, TWO_POLICIES))
    make_connection("pg-scratch")
    lines = run("policies", "list")[0].splitlines()
    assert lines[0].split() == ["NAME", "CONNECTIONS", "GUARDRAILS", "MASKING", "DEFAULT", "UPDATED"]
    assert lines[1].split()[:5] == ["prod-guard", "pg-main,pg-replica", "1", "1", "allow"]
    assert lines[2].split()[:5] == ["staging-guard", "pg-staging", "0", "0", "review"]
    assert lines[3] == "Connections without a policy (every statement is allowed and nothing is masked): pg-scratch"


# --- the model, the actions and the store the gateway reads ---------------------------------------------------------


def test_a_policy_that_guards_a_connection_cannot_be_deleted(tmp_path, pg_main):
    run("policies", "apply", write(tmp_path, ISSUE_EXAMPLE))
    policy = Policy.objects.get(name="prod-guard")
    with pytest.raises(ProtectedError):
        policy.delete()
    with pytest.raises(ValidationError, match="still guards pg-main; give those connections another policy"):
        do_delete_policy(policy)
    do_set_connection_policy(pg_main, None)
    do_delete_policy(policy)
    assert not Policy.objects.exists()
    assert policy_spec_for("pg-main") is None


def test_every_change_gives_a_revision_above_all_before_even_after_a_delete(make_connection):
    connection = make_connection("pg-main")
    seen = [policy_revision()]
    assert seen == [0]
    older = do_save_policy(PolicySpec("older"))
    seen.append(policy_revision())
    newest = do_save_policy(PolicySpec("newest"))
    seen.append(policy_revision())
    do_delete_policy(newest)  # the maximum goes down ...
    seen.append(policy_revision())
    do_set_connection_policy(connection, older)  # ... and the next change still gives a number never seen
    seen.append(policy_revision())
    do_save_policy(PolicySpec("older", default="deny"), policy=older)
    seen.append(policy_revision())
    # A node polling every so often sees a different number after every change ...
    assert all(before != after for before, after in zip(seen, seen[1:], strict=False))
    # ... and after the delete, the next change is above every number handed out before.
    assert seen[4] > max(seen[:4])
    assert seen[5] > seen[4]


def test_setting_a_connections_policy_moves_both_policies_revisions(make_connection):
    connection = make_connection("pg-main")
    first, second = do_save_policy(PolicySpec("first")), do_save_policy(PolicySpec("second"))
    do_set_connection_policy(connection, first)
    first.refresh_from_db()
    before_first, before_second = first.revision, second.revision
    do_set_connection_policy(connection, second)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.revision > before_first
    assert second.revision > before_second
    do_set_connection_policy(connection, second)  # no change, no new revision
    assert Policy.objects.get(pk=second.pk).revision == second.revision


def test_saving_unchanged_rules_keeps_the_revision():
    spec = PolicySpec("p", default="deny")
    policy = do_save_policy(spec, description="d")
    assert do_save_policy(spec, description="d", policy=policy).revision == policy.revision
    with pytest.raises(ValidationError, match="already exists"):
        do_save_policy(spec)
    with pytest.raises(ValidationError, match="cannot be renamed"):
        do_save_policy(PolicySpec("q"), policy=policy)


def test_the_store_loads_many_connections_in_one_query(
    tmp_path, three_connections, make_connection, django_assert_num_queries
):
    run("policies", "apply", write(tmp_path, TWO_POLICIES))
    make_connection("pg-scratch")
    with django_assert_num_queries(1):
        specs = policy_specs_for(["pg-main", "pg-staging", "pg-scratch", "pg-deleted"])
    assert specs["pg-main"].name == "prod-guard"
    assert specs["pg-staging"].default == "review"
    assert specs["pg-scratch"] is None  # no policy
    assert "pg-deleted" not in specs  # gone, which is not the same as unguarded
    with pytest.raises(Connection.DoesNotExist):
        policy_spec_for("pg-deleted")
    assert policy_specs_for([]) == {}


def test_stored_rules_that_no_longer_validate_deny_everything(pg_main):
    policy = do_save_policy(PolicySpec("p"))
    do_set_connection_policy(pg_main, policy)
    Policy.objects.filter(pk=policy.pk).update(rules={"default": "allow", "surprise": True}, revision=1)
    spec = policy_spec_for("pg-main")
    assert (spec.name, spec.default, spec.unparseable, spec.opaque) == ("p", "deny", "deny", "deny")


def test_the_store_sees_a_change_at_once(tmp_path, pg_main):
    run("policies", "apply", write(tmp_path, ISSUE_EXAMPLE))
    assert policy_spec_for("pg-main").default == "allow"
    run("policies", "apply", write(tmp_path, ISSUE_EXAMPLE.replace("default: allow", "default: deny")))
    assert policy_spec_for("pg-main").default == "deny"
    assert spec_of(Policy.objects.get(name="prod-guard")).default == "deny"


# --- the admin -----------------------------------------------------------------------------------------------------

RULES = """\
default: deny
guardrails:
  - name: reads
    match: {kind: SELECT}
    action: allow
masking:
  - name: secrets
    columns: [api_key]
"""


def test_the_admin_adds_a_policy_from_yaml(admin_client):
    response = admin_client.get(reverse("admin:connections_policy_add"))
    assert response.status_code == 200
    assert "default: allow" in response.content.decode()  # a starting point to edit
    response = admin_client.post(
        reverse("admin:connections_policy_add"), {"name": "ro", "description": "read only", "rules_yaml": RULES}
    )
    assert response.status_code == 302
    policy = Policy.objects.get(name="ro")
    assert policy.description == "read only"
    assert spec_of(policy) == parse_policy_body(RULES, "ro")
    assert policy.revision > 0


def test_the_admin_shows_the_same_line_numbered_errors_as_the_file(admin_client):
    bad = RULES.replace("kind: SELECT", "kind: SELEKT").replace("default: deny", "default: nope")
    response = admin_client.post(reverse("admin:connections_policy_add"), {"name": "ro", "rules_yaml": bad})
    assert response.status_code == 200
    body = response.content.decode()
    with pytest.raises(PolicyFileError) as caught:
        parse_policy_body(bad, "ro")
    assert len(caught.value.problems) == 2
    for problem in caught.value.problems:
        assert str(problem).replace("'", "&#x27;") in body
    assert "line 1: default &#x27;nope&#x27; is unknown" in body
    assert not Policy.objects.exists()


def test_the_admin_rejects_a_bad_policy_name(admin_client):
    response = admin_client.post(reverse("admin:connections_policy_add"), {"name": "no way", "rules_yaml": RULES})
    assert response.status_code == 200
    assert not Policy.objects.exists()


def test_the_admin_edits_rules_and_description_and_lists_the_connections(admin_client, tmp_path, pg_main):
    run("policies", "apply", write(tmp_path, ISSUE_EXAMPLE))
    policy = Policy.objects.get(name="prod-guard")
    url = reverse("admin:connections_policy_change", args=[policy.pk])
    page = admin_client.get(url).content.decode()
    assert reverse("admin:connections_connection_change", args=[pg_main.pk]) in page
    assert "no-unbounded-write" in page  # the rules, as YAML
    response = admin_client.post(url, {"description": "edited", "rules_yaml": RULES})
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.description == "edited"
    assert policy_spec_for("pg-main") == parse_policy_body(RULES, "prod-guard")
    revision = policy.revision
    # A description-only change is saved too.
    admin_client.post(url, {"description": "edited again", "rules_yaml": RULES})
    policy.refresh_from_db()
    assert policy.description == "edited again"
    assert policy.revision > revision


def test_the_admin_refuses_to_delete_a_policy_in_use(admin_client, tmp_path, pg_main):
    run("policies", "apply", write(tmp_path, ISSUE_EXAMPLE))
    policy = Policy.objects.get(name="prod-guard")
    response = admin_client.post(reverse("admin:connections_policy_delete", args=[policy.pk]), {"post": "yes"})
    assert response.status_code == 200
    assert "Cannot delete" in response.content.decode()
    assert Policy.objects.filter(pk=policy.pk).exists()


def test_the_admin_lists_policies(admin_client, tmp_path, pg_main):
    run("policies", "apply", write(tmp_path, ISSUE_EXAMPLE))
    body = admin_client.get(reverse("admin:connections_policy_changelist")).content.decode()
    assert "prod-guard" in body
    assert "pg-main" in body


def test_the_connection_admin_sets_the_policy_through_the_action(admin_client, pg_main):
    policy = do_save_policy(PolicySpec("p"))
    revision = policy.revision
    url = reverse("admin:connections_connection_change", args=[pg_main.pk])
    response = admin_client.post(url, connection_form(name="pg-main", policy=str(policy.pk)))
    assert response.status_code == 302
    assert policy_of("pg-main") == "p"
    assert Policy.objects.get(pk=policy.pk).revision > revision
    page = admin_client.get(reverse("admin:connections_connection_changelist")).content.decode()
    assert ">p<" in page
    admin_client.post(url, connection_form(name="pg-main", policy=""))
    assert policy_of("pg-main") is None
