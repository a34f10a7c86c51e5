"""The admin: secrets never render, and every change goes through the actions."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from guardian.models import UserObjectPermission

from connections.actions import do_grant_connect
from connections.credentials import decrypt_credentials
from connections.models import AccessToken, Connection, ServiceAccount

from .conftest import CANARY_PASSWORD

pytestmark = pytest.mark.django_db


def connection_form(**overrides) -> dict:
    data = {
        "name": "warehouse",
        "kind": "postgres",
        "host": "db.internal",
        "port": "5432",
        "database": "app",
        "username": "app_user",
        "tls_mode": "require",
        "tls_ca_pem": "",
        "retention_days": "90",
        "record_max_rows": "1000",
        "record_max_bytes": "1048576",
        "new_password": "",
    }
    data.update(overrides)
    return data


def test_it_adds_a_connection_with_an_encrypted_password(admin_client):
    response = admin_client.post(
        reverse("admin:connections_connection_add"), connection_form(new_password=CANARY_PASSWORD)
    )
    assert response.status_code == 302
    connection = Connection.objects.get(name="warehouse")
    assert decrypt_credentials(connection.encrypted_credentials) == {"password": CANARY_PASSWORD}


def test_it_requires_a_password_for_a_new_connection(admin_client):
    response = admin_client.post(reverse("admin:connections_connection_add"), connection_form())
    assert response.status_code == 200
    assert "needs the upstream password" in response.content.decode()
    assert not Connection.objects.exists()


def test_it_rejects_a_port_out_of_range(admin_client):
    response = admin_client.post(
        reverse("admin:connections_connection_add"), connection_form(port="70000", new_password="x")
    )
    assert "out of range" in response.content.decode()
    assert not Connection.objects.exists()


def test_it_never_renders_the_credentials(admin_client, make_connection):
    connection = make_connection()
    pages = [
        admin_client.get(reverse("admin:connections_connection_change", args=[connection.pk])),
        admin_client.get(reverse("admin:connections_connection_changelist")),
    ]
    for page in pages:
        body = page.content.decode()
        assert page.status_code == 200
        assert "db.internal" in body
        assert CANARY_PASSWORD not in body
        assert connection.encrypted_credentials not in body


def test_it_replaces_the_password_only_when_one_is_given(admin_client, make_connection):
    connection = make_connection()
    url = reverse("admin:connections_connection_change", args=[connection.pk])
    admin_client.post(url, connection_form(host="db2.internal"))
    connection.refresh_from_db()
    assert connection.host == "db2.internal"
    assert decrypt_credentials(connection.encrypted_credentials) == {"password": CANARY_PASSWORD}
    admin_client.post(url, connection_form(host="db2.internal", new_password="rotated-password"))
    connection.refresh_from_db()
    assert decrypt_credentials(connection.encrypted_credentials) == {"password": "rotated-password"}


def test_it_edits_object_permissions_through_guardian(admin_client, make_connection):
    connection = make_connection()
    response = admin_client.get(reverse("admin:connections_connection_permissions", args=[connection.pk]))
    assert response.status_code == 200


def test_it_drops_grants_with_a_deleted_connection(admin_client, make_connection, make_agent):
    connection = make_connection()
    do_grant_connect(make_agent(), connection)
    assert UserObjectPermission.objects.filter(object_pk=str(connection.pk)).exists()
    response = admin_client.post(reverse("admin:connections_connection_delete", args=[connection.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Connection.objects.exists()
    assert not UserObjectPermission.objects.exists()


def test_it_adds_an_agent_with_its_backing_user(admin_client):
    response = admin_client.post(
        reverse("admin:connections_serviceaccount_add"),
        {
            "name": "ci-bot",
            "description": "nightly",
            "tokens-TOTAL_FORMS": "0",
            "tokens-INITIAL_FORMS": "0",
            "ssh_keys-TOTAL_FORMS": "0",
            "ssh_keys-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    account = ServiceAccount.objects.get(name="ci-bot")
    assert account.user.username == "agent:ci-bot"
    assert not account.user.has_usable_password()
    assert len(account.scram_salt) == 24


def test_it_shows_an_agents_tokens_read_only(admin_client, make_agent, issue_token):
    account = make_agent()
    access_token, token = issue_token(account)
    body = admin_client.get(reverse("admin:connections_serviceaccount_change", args=[account.pk])).content
    body = body.decode()
    assert access_token.prefix in body
    assert token not in body
    assert access_token.token_hash not in body
    assert access_token.scram_verifier not in body


def test_it_deletes_an_agent_with_its_user(admin_client, make_agent, issue_token, django_user_model):
    account = make_agent()
    issue_token(account)
    admin_client.post(reverse("admin:connections_serviceaccount_delete", args=[account.pk]), {"post": "yes"})
    assert not ServiceAccount.objects.exists()
    assert not AccessToken.objects.exists()
    assert not django_user_model.objects.filter(username="agent:ci-bot").exists()


def test_it_cannot_add_tokens_in_the_admin(admin_client):
    assert admin_client.get(reverse("admin:connections_accesstoken_add")).status_code == 403


def test_it_revokes_a_token_for_good(admin_client, make_agent, issue_token):
    access_token, token = issue_token(make_agent(), timedelta(hours=1))
    url = reverse("admin:connections_accesstoken_change", args=[access_token.pk])
    page = admin_client.get(url).content.decode()
    assert token not in page
    assert access_token.token_hash not in page
    before = timezone.now()
    admin_client.post(url, {"revoked": "on"})
    access_token.refresh_from_db()
    assert access_token.revoked
    assert access_token.revoked_at >= before
    admin_client.post(url, {})  # the box is read-only now: un-revoking is not possible
    access_token.refresh_from_db()
    assert access_token.revoked


def test_it_pins_a_host_key_and_checks_forwarding_for_an_ssh_connection(admin_client):
    base = {"name": "web-01", "kind": "ssh", "host": "10.0.0.5", "port": "22", "username": "deploy"}
    base.update(tls_mode="disable", retention_days="30", record_max_rows="1000", record_max_bytes="1048576")
    for field in ("allow_forwarding", "allow_remote_forwarding"):
        bad = admin_client.post(reverse("admin:connections_connection_add"), {**base, field: "nohost"})
        assert bad.status_code == 200 and "is not HOST:PORT" in bad.content.decode()
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    forwarding = {"allow_forwarding": " 127.0.0.1:5432 ", "allow_remote_forwarding": "127.0.0.1:*, 127.0.0.1:8080"}
    added = admin_client.post(
        reverse("admin:connections_connection_add"),
        {**base, "known_host": f"[10.0.0.5]:22 {key} comment", **forwarding, "allow_agent_forwarding": "on"},
    )
    assert added.status_code == 302
    connection = Connection.objects.get(name="web-01")
    assert (connection.known_host, connection.allow_forwarding) == (key, "127.0.0.1:5432")
    assert connection.allow_remote_forwarding == "127.0.0.1:*,127.0.0.1:8080"
    assert (connection.allow_agent_forwarding, connection.allow_x11_forwarding) == (True, False)
