import io
import stat
import threading

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection as db_connection

from connections.credentials import (
    CredentialsError,
    decrypt_credentials,
    encrypt_credentials,
    load_or_create_key,
)
from connections.models import Connection

from .conftest import CANARY_PASSWORD


def test_it_round_trips_credentials():
    secret = {"password": CANARY_PASSWORD, "private_key": "-----BEGIN KEY-----\nabc\n"}
    encrypted = encrypt_credentials(secret)
    assert CANARY_PASSWORD not in encrypted
    assert decrypt_credentials(encrypted) == secret


def test_it_makes_a_private_key_file_on_first_use(credentials_key_file):
    assert not credentials_key_file.exists()
    encrypt_credentials({"password": "x"})
    assert stat.S_IMODE(credentials_key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials_key_file.parent.stat().st_mode) == 0o700
    Fernet(credentials_key_file.read_bytes().strip())  # a valid key
    assert list(credentials_key_file.parent.iterdir()) == [credentials_key_file]


def test_it_keeps_the_key_across_calls(credentials_key_file):
    encrypted = encrypt_credentials({"password": "x"})
    key = credentials_key_file.read_bytes()
    assert decrypt_credentials(encrypted) == {"password": "x"}
    assert credentials_key_file.read_bytes() == key


def test_it_agrees_on_one_key_when_threads_race(tmp_path):
    key_file = tmp_path / "race" / "credentials.key"
    barrier = threading.Barrier(8)
    keys = []

    def load():
        barrier.wait()
        keys.append(load_or_create_key(key_file))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8
    assert set(keys) == {key_file.read_bytes().strip()}
    assert list(key_file.parent.iterdir()) == [key_file]


def test_it_refuses_a_value_made_with_another_key(settings, tmp_path):
    encrypted = encrypt_credentials({"password": CANARY_PASSWORD})
    settings.GATEHOUSE_CREDENTIALS_KEY_FILE = tmp_path / "other" / "credentials.key"
    with pytest.raises(CredentialsError, match="key is wrong") as caught:
        decrypt_credentials(encrypted)
    assert CANARY_PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize("corrupt", ["", "not-a-token", "gAAAAA" + "A" * 80, "ünïcode"])
def test_it_refuses_corrupt_values(corrupt):
    with pytest.raises(CredentialsError):
        decrypt_credentials(corrupt)


def test_it_refuses_a_tampered_value():
    encrypted = encrypt_credentials({"password": CANARY_PASSWORD})
    tampered = encrypted[:-6] + ("A" if encrypted[-6] != "A" else "B") + encrypted[-5:]
    with pytest.raises(CredentialsError) as caught:
        decrypt_credentials(tampered)
    assert CANARY_PASSWORD not in str(caught.value)


def test_it_reports_a_broken_key_file(credentials_key_file):
    credentials_key_file.parent.mkdir(mode=0o700)
    credentials_key_file.write_text("not a fernet key\n")
    with pytest.raises(CredentialsError, match="not hold a valid Fernet key"):
        encrypt_credentials({"password": "x"})


@pytest.mark.django_db
def test_it_keeps_the_password_out_of_every_stored_row(make_connection):
    connection = make_connection()
    stored = Connection.objects.values_list("encrypted_credentials", flat=True).get(pk=connection.pk)
    assert CANARY_PASSWORD not in stored
    assert decrypt_credentials(stored) == {"password": CANARY_PASSWORD}
    dump = _dumpdata()
    assert connection.name in dump
    assert CANARY_PASSWORD not in dump


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_password_out_of_the_sqlite_file(make_connection, tmp_path):
    if db_connection.vendor != "sqlite":
        pytest.skip("inspects the bytes of a SQLite database file")
    make_connection()
    # The test database lives in memory; VACUUM INTO writes its exact pages to a file.
    database_file = tmp_path / "copy.sqlite3"
    with db_connection.cursor() as cursor:
        cursor.execute("VACUUM INTO %s", [str(database_file)])
    content = database_file.read_bytes()
    assert b"db.internal" in content
    assert CANARY_PASSWORD.encode() not in content


def _dumpdata() -> str:
    out = io.StringIO()
    call_command("dumpdata", "connections", "auth", "guardian", stdout=out)
    return out.getvalue()
