"""Content detectors: every canary found, look-alikes left alone, the prefilter sound and cheap."""

import hashlib
import time

import pytest

from connections.policy.detectors import (
    DETECTORS,
    DetectorSet,
    byte_features,
    iban_valid,
    jwt_header_valid,
    luhn_valid,
)
from connections.policy.rules import DETECTORS as DETECTOR_NAMES
from tests.policy.canaries import AWS_SECRET, CANARIES, CANARY_VARIANTS, JWT

ALL = DetectorSet(DETECTOR_NAMES)
# A value like bench/pg_bench.py's streamed rows: 64 hex digits and filler.
MD5_ROW = "".join(hashlib.md5(b, usedforsecurity=False).hexdigest() for b in (b"1", b"2")) + "x" * 30

CANARY_CASES = [(name, value) for name, values in CANARY_VARIANTS.items() for value in values]


def _masked_part(value: str) -> str:
    """What a detector reports for a canary: "Bearer <token>" keeps its scheme word."""
    return value.removeprefix("Bearer ")


def test_it_has_a_canary_and_a_detector_for_every_detector_name() -> None:
    assert set(CANARIES) == set(DETECTOR_NAMES) == set(DETECTORS)


@pytest.mark.parametrize(("name", "value"), CANARY_CASES)
@pytest.mark.parametrize("template", ["{}", "note: {} (end)", '{{"v": "{}"}}', "x\t{}\ny"])
def test_it_finds_every_canary_exactly(name: str, value: str, template: str) -> None:
    text = template.format(value)
    [(start, end, found)] = ALL.find(text)
    assert found == name
    assert text[start:end] == _masked_part(value)


@pytest.mark.parametrize(("name", "value"), CANARY_CASES)
def test_it_prefilters_every_canary_in_with_its_own_bit(name: str, value: str) -> None:
    data = f"id 7: {value};".encode()
    assert byte_features(data) & DETECTORS[name].bit
    assert DetectorSet([name]).features(data)


LOOK_ALIKES = [
    "4111 1111 1111 1112",  # Luhn-invalid
    "4111111111111112",
    "1234567890123456",  # starts with 1: no card network
    "1700000000000",  # a millisecond timestamp
    "order 1234567890123 shipped",
    "ORD-2024-000123",
    "2024-01-15",
    "2024-01-15 10:30:00+00",
    "2024-01-15T10:30:00.123456+01:00",
    "1.2.3",
    "v10.4.12",
    "550e8400-e29b-41d4-a716-446655440000",
    "550E8400-E29B-41D4-A716-446655440000",
    "hello world",
    "Alice Smith",
    "The quick brown fox jumps over the lazy dog.",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",  # SHA-1 hex: 40 characters, but lower case
    "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
    "5d41402abc4b2a76b9719d911017c592",
    "GB82 WEST 1234 5698 7654 33",  # IBAN checksum off by one
    "GB82WEST1234569876543",  # one character short for GB
    "XX82WEST12345698765432",  # no such country
    "000-12-3456",
    "666-12-3456",
    "900-12-3456",
    "123-00-4567",
    "123-45-0000",
    "415-555-2671",  # no +: not E.164
    "(415) 555 2671",
    "x+12345678901",  # part of an expression, not a phone number
    "+1.5e10",
    "192.168.1.1",
    "user at example dot com",
    "a@b",
    "@channel",
    "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.abc",  # header without "alg"
    "eyJub3QganNvbg.abc.def",  # header is not JSON
    "AKIAIOSFODNN7EXAMPL",  # one character short
    "sk-learn",
    "task-1234567890abcdefghijklmnop",  # "sk-" inside a word
    "Bearer realm",
    "bearer short",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----",
    "some_snake_case_identifier",
    "an id tail ABCDEFGHIJabcdefghij0123456789abcdefghij in prose",  # 40 mixed, no label, no / or +
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_it_leaves_look_alikes_alone(text: str) -> None:
    assert ALL.find(text) == []


@pytest.mark.parametrize(
    "text",
    [
        MD5_ROW,
        "the quick brown fox jumps over the lazy dog",
        "Alice Smith",
        "order 12345 shipped on 2024-01-15 v1.2.3",  # '-' present: the finer dash tests decide
        "some_snake_case_identifier",
        "/usr/local/bin:/usr/bin",
    ],
)
def test_it_prefilters_ordinary_values_out(text: str) -> None:
    assert ALL.features(text.encode()) == 0


def test_it_skips_values_shorter_than_any_hit() -> None:
    assert DetectorSet(["credit_card"]).features(b"4111") == 0
    assert DetectorSet(["email"]).min_length == 6


def test_it_cuts_a_grouped_card_at_a_group_boundary() -> None:
    text = "4111 1111 1111 1111 12/25"
    [(start, end, name)] = ALL.find(text)
    assert (text[start:end], name) == ("4111 1111 1111 1111", "credit_card")


def test_it_does_not_take_a_card_out_of_a_longer_number() -> None:
    assert ALL.find("14111111111111111") == []
    assert ALL.find("99-4111111111111111") == []


def test_it_cuts_an_iban_at_its_country_length() -> None:
    text = "pay GB82 WEST 1234 5698 7654 32 EUR"
    [(start, end, name)] = ALL.find(text)
    assert (text[start:end], name) == ("GB82 WEST 1234 5698 7654 32", "iban")


def test_it_finds_an_aws_secret_by_label_whole_value_or_base64_characters() -> None:
    plain = "ABCDEFGHIJabcdefghij0123456789abcdefghij"  # 40, mixed case, no '/' or '+'
    assert ALL.find(plain) == [(0, 40, "aws_key")]  # the whole value
    labelled = f"aws_secret_access_key = {plain}"
    assert ALL.find(labelled) == [(24, 64, "aws_key")]
    assert ALL.find(f"SECRET {plain} x") == [(7, 47, "aws_key")]
    assert ALL.find(f"key {AWS_SECRET} in prose") == [(4, 44, "aws_key")]  # has '/'
    assert ALL.find(f"{plain}x") == []  # 41 characters: not a key


def test_it_masks_an_unterminated_private_key_to_the_end() -> None:
    text = "key: -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nno end"
    assert ALL.find(text) == [(5, len(text), "private_key")]


def test_it_masks_the_bearer_token_not_the_scheme_word() -> None:
    text = f"Authorization: Bearer {JWT}"
    [(start, end, name)] = ALL.find(text)
    assert text[start:end] == JWT
    assert name == "jwt"  # the same span twice: the detector named first wins


def test_it_resolves_overlaps_to_non_overlapping_spans_in_order() -> None:
    text = "mail bob@example.com, card 4111111111111111, phone +14155552671"
    spans = ALL.find(text)
    assert [name for _, _, name in spans] == ["email", "credit_card", "phone"]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_it_runs_only_the_detectors_of_its_set() -> None:
    emails = DetectorSet(["email"])
    assert emails.find("bob@example.com 4111111111111111") == [(0, 15, "email")]
    assert emails.features(b"4111111111111111") == 0


def test_it_rejects_unknown_detector_names() -> None:
    with pytest.raises(ValueError, match="unknown detectors: fingerprint"):
        DetectorSet(["email", "fingerprint"])


def test_it_finds_unicode_emails_and_survives_undecodable_bytes() -> None:
    assert ALL.find("josé.garcía@correo.example.es") == [(0, 29, "email")]
    raw = b"\xff\xfe bob@example.com \xc3"
    text = raw.decode("utf-8", "surrogateescape")
    assert ALL.features(raw)
    [(start, end, _)] = ALL.find(text)
    assert text[start:end] == "bob@example.com"


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000 + "@",
        "a@" * 100_000,
        "1" * 200_000,
        "4111 " * 50_000,
        "-" * 200_000,
        "-----BEGIN " * 20_000,
        "A" * 200_000,
        "eyJ" + "a" * 200_000 + ".",
        "Bearer " * 30_000,
        ("aB3" * 14 + " ") * 5_000,
        "gh_" * 60_000,
    ],
)
def test_it_stays_linear_on_hostile_input(text: str) -> None:
    started = time.perf_counter()
    ALL.find(text)
    assert time.perf_counter() - started < 2.0


def test_it_validates_luhn_iban_and_jwt_headers() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert luhn_valid("378282246310005")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765433")
    assert not iban_valid("GB82WEST1234569876543")
    assert jwt_header_valid(JWT.split(".")[0])
    assert not jwt_header_valid("eyJ0eXAiOiJKV1QifQ")  # {"typ":"JWT"}: no alg
    assert not jwt_header_valid("!!!")


# Pieces of terminal output and long values: the canaries, their look-alikes, and what surrounds them.
_PIECES = (
    *[f" {value} " for name in ("credit_card", "ssn", "aws_key") for value in CANARY_VARIANTS[name]],
    *[value for name in ("credit_card", "ssn", "aws_key") for value in CANARY_VARIANTS[name]],
    "4111 1111 1111 1112", "41111111111111111111", "2024-05-12 12:34:56,789", "123-45-67890", "0123-45-6789",
    "-rw-r--r-- 1 www-data www-data   1234567 Jan 12", "aws_secret_access_key = ", "GET /api/v1/user/12345 200",
    "=", "-", " ", "  ", "/", "+", "\r\n", "\x1b[0m", "x" * 39, "ab/+" * 10, "7" * 12, "5" * 19, "AKIA",
)  # fmt: skip


@pytest.mark.parametrize("seed", range(40))
def test_it_finds_in_long_text_exactly_what_a_whole_text_scan_finds(seed: int, monkeypatch) -> None:
    """Long texts are scanned only in the runs that can hold a hit; that must change no hit, at any boundary."""
    import random

    from connections.policy import detectors

    pieces = random.Random(seed).choices(_PIECES, k=400)
    text = "".join(pieces)
    cut_scan = ALL.find(text, features=ALL.features_needed)
    monkeypatch.setattr(detectors, "_SCAN_WHOLE_CHARS", len(text) + 1)
    whole_scan = ALL.find(text, features=ALL.features_needed)

    assert cut_scan == whole_scan
    assert {name for _start, _end, name in whole_scan} >= {"credit_card", "ssn", "aws_key"}
