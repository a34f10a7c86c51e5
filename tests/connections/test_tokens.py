import base64
import hashlib
import re
import secrets
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import AccessToken
from connections.protocols.pgwire.scram import (
    ScramClientExchange,
    ScramError,
    ScramServerExchange,
    ScramVerifier,
)
from connections.tokens import generate_token, hash_token, scram_verifier_for

TOKEN_SHAPE = re.compile(r"gh_([a-z0-9]{8})_([A-Za-z0-9_-]{43})")


def scram_login(token: str, stored: list[AccessToken]):
    """A full SCRAM-SHA-256 exchange of a client holding `token` against the stored verifiers."""
    candidates = [(row.id, ScramVerifier.parse(row.scram_verifier)) for row in stored]
    server = ScramServerExchange(candidates, decoy_salt=secrets.token_bytes(16), decoy_iterations=4096)
    client = ScramClientExchange(token)
    server_first = server.handle_first("SCRAM-SHA-256", client.first_message())
    owner, server_final = server.handle_final(client.final_message(server_first))
    client.check_server_final(server_final)
    return owner


def test_it_generates_tokens_of_the_documented_shape():
    token, prefix = generate_token()
    match = TOKEN_SHAPE.fullmatch(token)
    assert match is not None
    assert match.group(1) == prefix
    assert len({generate_token()[1] for _ in range(50)}) == 50


def test_it_hashes_with_sha256():
    token, _ = generate_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert hash_token(token) != hash_token(token + "x")


@pytest.mark.django_db
def test_it_gives_each_account_a_16_byte_salt(make_agent):
    first, second = make_agent("one"), make_agent("two")
    assert len(base64.b64decode(first.scram_salt)) == 16
    assert first.scram_salt != second.scram_salt


@pytest.mark.django_db
def test_it_stores_only_hashes_of_an_issued_token(make_agent, issue_token, settings):
    account = make_agent()
    before = timezone.now()
    access_token, token = issue_token(account, timedelta(hours=2))
    after = timezone.now()
    stored = AccessToken.objects.get(pk=access_token.pk)
    assert token.startswith(f"gh_{stored.prefix}_")
    assert stored.token_hash == hash_token(token)
    assert stored.scram_verifier == scram_verifier_for(token, account)
    verifier = ScramVerifier.parse(stored.scram_verifier)
    assert verifier.iterations == settings.GATEHOUSE_TOKEN_SCRAM_ITERATIONS
    assert verifier.salt == base64.b64decode(account.scram_salt)
    assert token not in {stored.token_hash, stored.scram_verifier}
    assert before + timedelta(hours=2) <= stored.expires_at <= after + timedelta(hours=2)


@pytest.mark.django_db
def test_it_passes_a_full_scram_exchange_with_the_token(make_agent, issue_token):
    account = make_agent()
    access_token, token = issue_token(account)
    assert scram_login(token, [access_token]) == access_token.id


@pytest.mark.django_db
def test_it_finds_which_token_of_an_account_signed_in(make_agent, issue_token):
    account = make_agent()
    first, first_plain = issue_token(account)
    second, second_plain = issue_token(account)
    assert first.scram_verifier.split("$")[1] == second.scram_verifier.split("$")[1]  # shared salt
    assert scram_login(second_plain, [first, second]) == second.id
    assert scram_login(first_plain, [first, second]) == first.id


@pytest.mark.django_db
def test_it_fails_scram_with_a_wrong_token(make_agent, issue_token):
    account = make_agent()
    access_token, token = issue_token(account)
    other, _ = generate_token()
    with pytest.raises(ScramError):
        scram_login(other, [access_token])
    with pytest.raises(ScramError):
        scram_login(token[:-1], [access_token])
