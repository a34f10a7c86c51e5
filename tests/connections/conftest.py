"""Fixtures for the connections tests: a private credentials key and real rows made by the actions."""

from datetime import timedelta

import pytest

from connections.actions import do_create_connection, do_create_service_account, do_issue_token

CANARY_PASSWORD = "canary-Upstream-Secret-7f3a9c"


@pytest.fixture(autouse=True)
def credentials_key_file(settings, tmp_path):
    """Each test gets its own Fernet key file, made on first use."""
    key_file = tmp_path / "keys" / "credentials.key"
    settings.GATEHOUSE_CREDENTIALS_KEY_FILE = key_file
    return key_file


@pytest.fixture
def make_connection(db):
    def make(name: str = "warehouse", **overrides):
        fields = {
            "name": name,
            "kind": "postgres",
            "host": "db.internal",
            "port": 5432,
            "database": "app",
            "username": "app_user",
            "password": CANARY_PASSWORD,
            "tls_mode": "require",
        }
        fields.update(overrides)
        return do_create_connection(**fields)

    return make


@pytest.fixture
def make_agent(db):
    def make(name: str = "ci-bot", description: str = ""):
        return do_create_service_account(name, description)

    return make


@pytest.fixture
def issue_token():
    def issue(account, ttl: timedelta = timedelta(hours=1)):
        return do_issue_token(account, ttl)

    return issue
