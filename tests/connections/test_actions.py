from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from connections.actions import (
    do_create_connection,
    do_create_service_account,
    do_grant_connect,
    do_issue_token,
    do_revoke_token,
    do_set_connection_password,
)
from connections.credentials import decrypt_credentials, encrypt_credentials
from connections.models import AccessToken, Connection

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Bad Name!"}, "not a slug"),
        ({"name": "x" * 64}, "longer than 63"),
        ({"kind": "mysql"}, "kind 'mysql' is not supported"),
        ({"port": 0}, "out of range"),
        ({"port": 65536}, "out of range"),
        ({"tls_mode": "prefer"}, "TLS mode 'prefer' is unknown"),
        ({"host": " "}, "host must not be empty"),
        ({"database": ""}, "database must not be empty"),
        ({"username": ""}, "user must not be empty"),
        ({"password": ""}, "password must not be empty"),
        ({"retention_days": 0}, "at least 1 day"),
        ({"tls_ca_pem": "-----BEGIN CERTIFICATE-----\nnope\n"}, "not a PEM certificate"),
    ],
)
def test_it_validates_a_new_connection(make_connection, overrides, message):
    with pytest.raises(ValidationError, match=message):
        make_connection(**overrides)
    assert not Connection.objects.exists()


def test_it_keeps_other_credential_fields_when_the_password_changes(make_connection):
    connection = make_connection()
    connection.encrypted_credentials = encrypt_credentials({"password": "old", "private_key": "k"})
    connection.save()
    do_set_connection_password(connection, "new")
    connection.refresh_from_db()
    assert decrypt_credentials(connection.encrypted_credentials) == {"password": "new", "private_key": "k"}


def test_it_replaces_credentials_made_with_a_lost_key(make_connection, settings, tmp_path):
    connection = make_connection()
    settings.GATEHOUSE_CREDENTIALS_KEY_FILE = tmp_path / "new-keys" / "credentials.key"
    do_set_connection_password(connection, "fresh")
    connection.refresh_from_db()
    assert decrypt_credentials(connection.encrypted_credentials) == {"password": "fresh"}


def test_it_refuses_an_agent_whose_user_name_is_taken(django_user_model):
    django_user_model.objects.create_user("agent:ci-bot")
    with pytest.raises(ValidationError, match="already exists"):
        do_create_service_account("ci-bot")


def test_it_refuses_a_non_positive_ttl(make_agent):
    account = make_agent()
    with pytest.raises(ValidationError, match="positive"):
        do_issue_token(account, timedelta(0))
    assert not AccessToken.objects.exists()


def test_it_revokes_a_single_token(make_agent, issue_token):
    account = make_agent()
    first, _ = issue_token(account)
    second, _ = issue_token(account)
    do_revoke_token(first)
    revoked = dict(AccessToken.objects.values_list("id", "revoked"))
    assert revoked == {first.id: True, second.id: False}


def test_it_grants_idempotently(make_connection, make_agent):
    connection, account = make_connection(), make_agent()
    do_grant_connect(account, connection)
    do_grant_connect(account, connection)
    assert account.user.userobjectpermission_set.count() == 1


def test_it_rolls_back_a_failed_creation(django_user_model):
    with pytest.raises(ValidationError):
        do_create_service_account("bad name")
    assert not django_user_model.objects.exists()
    with pytest.raises(ValidationError):
        do_create_connection(
            name="x", kind="postgres", host="h", port=1, database="d", username="u", password="", tls_mode="require"
        )
    assert not Connection.objects.exists()
