"""lookup_gateway_login: the gateway's one-query session-open lookup."""

from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone
from guardian.shortcuts import assign_perm

from connections.access import GatewayLogin, GatewayToken, lookup_gateway_login, record_token_use
from connections.actions import do_grant_connect, do_revoke_tokens
from connections.credentials import decrypt_credentials
from connections.models import AccessToken

from .conftest import CANARY_PASSWORD


@pytest.fixture
def granted(make_connection, make_agent, issue_token):
    connection = make_connection("warehouse")
    connection.record_max_rows = 50
    connection.save(update_fields=["record_max_rows"])
    account = make_agent("ci-bot")
    do_grant_connect(account, connection)
    access_token, _ = issue_token(account)
    return connection, account, access_token


@pytest.fixture
def probed_connection(db):
    # Django asks SQLite once per database connection whether it has JSON
    # support (a cached feature probe); a long-lived gateway pays it once.
    return db_connection.features.supports_json_field


def test_it_loads_tokens_and_connection_in_one_query(probed_connection, granted, django_assert_num_queries):
    connection, account, access_token = granted
    with django_assert_num_queries(1):
        login = lookup_gateway_login("ci-bot", "warehouse", timezone.now())
    assert login == GatewayLogin(
        account_id=account.id,
        account_name="ci-bot",
        tokens=[GatewayToken(access_token.id, access_token.token_hash, access_token.scram_verifier)],
        connection=login.connection,
    )
    assert login.connection == {
        "id": connection.id,
        "name": "warehouse",
        "kind": "postgres",
        "host": "db.internal",
        "port": 5432,
        "database": "app",
        "username": "app_user",
        "encrypted_credentials": connection.encrypted_credentials,
        "tls_mode": "require",
        "tls_ca_pem": "",
        "record_max_rows": 50,
        "record_max_bytes": 1 << 20,
        "retention_days": connection.retention_days,
        "known_host": "",
        "allow_forwarding": "",
        "allow_remote_forwarding": "",
        "allow_agent_forwarding": False,
        "allow_x11_forwarding": False,
        "record_file_content": False,
    }
    assert CANARY_PASSWORD not in repr(login)
    assert decrypt_credentials(login.connection["encrypted_credentials"]) == {"password": CANARY_PASSWORD}


def test_it_answers_forbidden_like_unknown(probed_connection, granted, make_connection, django_assert_num_queries):
    make_connection("billing")
    now = timezone.now()
    with django_assert_num_queries(2):
        forbidden = lookup_gateway_login("ci-bot", "billing", now)
        unknown = lookup_gateway_login("ci-bot", "no-such-db", now)
    assert forbidden.connection is None
    assert forbidden == unknown
    assert len(forbidden.tokens) == 1


def test_it_counts_a_group_permission(make_connection, make_agent, make_group, issue_token):
    connection = make_connection("warehouse")
    account = make_agent("member")
    issue_token(account)
    assign_perm("connections.connect", make_group("bots", account.user), connection)
    login = lookup_gateway_login("member", "warehouse", timezone.now())
    assert login.connection["id"] == connection.id


def test_it_ignores_a_grant_of_another_permission(make_connection, make_agent, issue_token):
    connection = make_connection("warehouse")
    account = make_agent("viewer")
    issue_token(account)
    assign_perm("connections.view_connection", account.user, connection)
    assert lookup_gateway_login("viewer", "warehouse", timezone.now()).connection is None


def test_it_ignores_another_agents_grant(granted, make_agent, issue_token):
    other = make_agent("other")
    issue_token(other)
    assert lookup_gateway_login("other", "warehouse", timezone.now()).connection is None


def test_it_excludes_expired_and_revoked_tokens(granted, issue_token):
    _, account, first = granted
    second, _ = issue_token(account, timedelta(hours=10))
    later = timezone.now() + timedelta(hours=2)  # `first` lives one hour
    login = lookup_gateway_login("ci-bot", "warehouse", later)
    assert [token.id for token in login.tokens] == [second.id]
    assert lookup_gateway_login("ci-bot", "warehouse", timezone.now() + timedelta(hours=11)) is None
    assert do_revoke_tokens(account) == 2
    assert lookup_gateway_login("ci-bot", "warehouse", timezone.now()) is None


def test_it_returns_every_usable_token_newest_first(granted, issue_token):
    _, account, first = granted
    second, _ = issue_token(account)
    login = lookup_gateway_login("ci-bot", "warehouse", timezone.now())
    assert [token.id for token in login.tokens] == [second.id, first.id]


def test_it_returns_none_for_an_unknown_agent(granted):
    assert lookup_gateway_login("nobody", "warehouse", timezone.now()) is None


def test_it_returns_none_for_a_deactivated_agent(granted):
    _, account, _ = granted
    account.user.is_active = False
    account.user.save()
    assert lookup_gateway_login("ci-bot", "warehouse", timezone.now()) is None


def test_it_records_token_use_in_one_update(granted, issue_token, django_assert_num_queries):
    _, account, first = granted
    second, _ = issue_token(account)
    untouched, _ = issue_token(account)
    when = timezone.now()
    with django_assert_num_queries(1):
        assert record_token_use([first.id, second.id], when) == 2
    used = dict(AccessToken.objects.values_list("id", "last_used_at"))
    assert used == {first.id: when, second.id: when, untouched.id: None}
    with django_assert_num_queries(0):
        assert record_token_use([], when) == 0
