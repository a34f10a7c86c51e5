"""The deployment's seal key: made once, private, and only its own signatures verify."""

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from recordings.signing import SigningKeyMissing, seal_message, sign_seal, verify_seal

HEAD = "ab" * 32
MAIN = Path(__file__).resolve().parents[2]


def test_it_creates_a_private_key_on_first_use(settings):
    key_file = settings.GATEHOUSE_SIGNING_KEY_FILE
    assert not key_file.exists()

    sign_seal(uuid.uuid4(), HEAD, 3)

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in key_file.parent.iterdir()] == [key_file.name]  # no temporary file left


def test_it_verifies_only_the_exact_seal():
    session_id = uuid.uuid4()
    signature = sign_seal(session_id, HEAD, 12)

    assert verify_seal(session_id, HEAD, 12, signature)
    assert verify_seal(str(session_id).upper(), HEAD.upper(), 12, signature)  # canonical forms
    assert not verify_seal(session_id, HEAD, 11, signature)
    assert not verify_seal(session_id, "cd" * 32, 12, signature)
    assert not verify_seal(uuid.uuid4(), HEAD, 12, signature)
    assert not verify_seal(session_id, HEAD, 12, "not base64!")
    assert not verify_seal(session_id, HEAD, 12, sign_seal(session_id, HEAD, 13))


def test_it_does_not_accept_a_signature_from_another_key(settings, tmp_path):
    session_id = uuid.uuid4()
    signature = sign_seal(session_id, HEAD, 5)

    settings.GATEHOUSE_SIGNING_KEY_FILE = tmp_path / "other" / "key.pem"
    sign_seal(session_id, HEAD, 5)  # makes the other key

    assert not verify_seal(session_id, HEAD, 5, signature)


def test_it_will_not_invent_a_key_just_to_verify(settings):
    with pytest.raises(SigningKeyMissing):
        verify_seal(uuid.uuid4(), HEAD, 1, "AAAA")
    assert not settings.GATEHOUSE_SIGNING_KEY_FILE.exists()


def test_it_rejects_malformed_seal_values():
    with pytest.raises(ValueError, match="64 hex"):
        seal_message(uuid.uuid4(), "abc", 1)
    with pytest.raises(ValueError, match="negative"):
        seal_message(uuid.uuid4(), HEAD, -1)
    with pytest.raises(ValueError):
        seal_message("not-a-uuid", HEAD, 1)


def test_it_lets_racing_processes_agree_on_one_key(settings):
    key_file = settings.GATEHOUSE_SIGNING_KEY_FILE
    session_id = str(uuid.uuid4())
    script = (
        "import django, sys; django.setup();"
        "from recordings.signing import sign_seal;"
        f"print(sign_seal({session_id!r}, {HEAD!r}, 7))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gateway_site.settings",
        "GATEHOUSE_DATA_DIR": str(key_file.parent.parent / "data"),
        "GATEHOUSE_SIGNING_KEY_FILE": str(key_file),
    }
    processes = [
        subprocess.Popen([sys.executable, "-c", script], cwd=MAIN, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    signatures = [process.communicate(timeout=60)[0].strip() for process in processes]

    assert all(process.returncode == 0 for process in processes)
    # Ed25519 is deterministic: one key means one signature.
    assert len(set(signatures)) == 1
    assert verify_seal(session_id, HEAD, 7, signatures[0])
