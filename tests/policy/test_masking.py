"""Inline masking: styles, column rules, DataRow formats and types, COPY rows, error fields.

Binary results are checked with psycopg's own binary loaders, the decoders a
client runs, so "the client can still decode it" is tested, not assumed.
"""

import csv
import io
import json
import random
import re
import struct

import pytest
from psycopg.adapt import Transformer
from psycopg.pq import Format

from connections.policy.masking import (
    _SECRET_LITERAL,
    FULL_MASK,
    Masker,
    RowMasker,
    Style,
    copy_text_decode,
    copy_text_encode,
    hash_mask,
    mask_string,
    may_hold_secret,
)
from connections.policy.rules import DETECTORS, MaskingRule
from connections.protocols.pgwire.messages import Column, parse_data_row, parse_error_fields
from tests.policy.canaries import CANARY_VARIANTS

KEY = b"deployment-key-0123456789abcdef"
USERS, ORDERS = 16500, 16600
TABLES = {USERS: ("public", "users"), ORDERS: ("billing", "orders")}

TEXT, VARCHAR, INT4, UUID, JSON, JSONB, TEXT_ARRAY, INT4_ARRAY, RECORD = 25, 1043, 23, 2950, 114, 3802, 1009, 1007, 2249
CITEXT = 70001  # an extension type: its oid is not fixed

SECRETS = MaskingRule("secrets", "full", columns=("*password*", "api_key", "*.token"))
PII = MaskingRule("pii", "partial", detectors=DETECTORS)

LOADERS = Transformer()


def load(oid: int, data: bytes | None) -> object:
    """Decode a binary value as psycopg does for a binary cursor."""
    return None if data is None else LOADERS.get_loader(oid, Format.BINARY).load(data)


def data_row(*values: bytes | None) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        out += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return out


def binary_array(elements: list[bytes | None], element_oid: int = TEXT) -> bytes:
    head = struct.pack("!iiI", 1, int(None in elements), element_oid) + struct.pack("!ii", len(elements), 1)
    return head + b"".join(struct.pack("!i", -1) if e is None else struct.pack("!i", len(e)) + e for e in elements)


def column(name: str, type_oid: int = TEXT, fmt: int = 0, table: int = USERS) -> Column:
    return Column(name, table, 1 if table else 0, type_oid, fmt)


def masker(*rules: MaskingRule, tables: dict | None = None) -> Masker:
    return Masker(rules or (SECRETS, PII), KEY, TABLES if tables is None else tables)


def mask(columns: list[Column], *values: bytes | None, rules: tuple = ()) -> list[bytes | None]:
    plan = masker(*rules).for_columns(columns)
    assert plan is not None
    return parse_data_row(plan.mask_row(data_row(*values)))


# --- styles ---------------------------------------------------------------------------------


def test_it_masks_full_with_eight_stars_whatever_the_length() -> None:
    assert mask_string("x", Style("full"), KEY) == FULL_MASK
    assert mask_string("a much longer secret value", Style("full"), KEY) == "********"


def test_it_keeps_the_last_characters_in_partial_unless_the_value_is_short() -> None:
    assert mask_string("4111111111111111", Style("partial", 4), KEY) == "************1111"
    assert mask_string("1234567", Style("partial", 4), KEY) == "*******"  # shorter than 2 * keep
    assert mask_string("abcdef", Style("partial", 0), KEY) == "******"


def test_it_hashes_deterministically_per_deployment_key() -> None:
    first = mask_string("bob@example.com", Style("hash"), KEY)
    assert first == mask_string("bob@example.com", Style("hash"), KEY) == hash_mask(KEY, b"bob@example.com")
    assert first.startswith("h:") and len(first) == 18
    assert first != mask_string("bob@example.com", Style("hash"), b"another deployment")
    assert first != mask_string("eve@example.com", Style("hash"), KEY)


def test_it_nulls_a_whole_value_but_not_part_of_a_text() -> None:
    assert mask_string("secret", Style("null"), KEY) is None
    nulling = masker(MaskingRule("n", "null", detectors=("email",)))
    assert nulling.mask_text("mail bob@example.com now") == "mail ******** now"


def test_it_fails_closed_on_an_unknown_style() -> None:
    assert mask_string("secret", Style("sparkle"), KEY) == FULL_MASK


# --- column rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "table", "hit"),
    [
        ("api_key", "api_key", USERS, True),
        ("api_key", "API_KEY", USERS, True),  # case-insensitive
        ("api_key", "api_keys", USERS, False),
        ("*password*", "old_password_hash", USERS, True),
        ("users.email", "email", USERS, True),
        ("users.email", "email", ORDERS, False),
        ("*.token", "token", ORDERS, True),
        ("public.users.email", "email", USERS, True),
        ("billing.users.email", "email", USERS, False),
        ("billing.*.email", "email", ORDERS, True),
        ("api_key", "api_key", 0, True),  # a computed column matches bare patterns
        ("*.api_key", "api_key", 0, True),
        ("users.api_key", "api_key", 0, False),  # ... but not qualified ones
        ("users.email", "email", 99999, True),  # a table we cannot name: fail closed
        ("users.email", "name", 99999, False),
    ],
)
def test_it_matches_column_patterns_with_their_qualification(pattern: str, name: str, table: int, hit: bool) -> None:
    rules = masker(MaskingRule("r", "full", columns=(pattern,)))
    assert (rules.column_style(name, table) is not None) is hit


def test_it_lets_the_first_rule_in_policy_order_win() -> None:
    rules = masker(
        MaskingRule("first", "hash", columns=("users.email",)),
        MaskingRule("second", "full", columns=("email",)),
    )
    assert rules.column_style("email", USERS) == Style("hash")
    assert rules.column_style("email", ORDERS) == Style("full")


def test_it_sees_through_an_alias_with_the_real_column_name() -> None:
    rules = Masker((SECRETS,), KEY, TABLES, {(USERS, 3): "password"})
    assert rules.column_style("p", USERS, 3) == Style("full")  # SELECT password AS p
    assert rules.column_style("p", USERS, 4) is None
    assert rules.missing_tables([column("p", table=USERS)._replace(attnum=9)]) == {USERS}
    assert rules.missing_tables([column("p", table=USERS)._replace(attnum=3)]) == set()


def test_it_names_the_tables_it_still_needs() -> None:
    rules = masker(MaskingRule("r", "full", columns=("users.email",)), tables={})
    columns = [column("email", table=USERS), column("x", table=0)]
    assert rules.missing_tables(columns) == {USERS}
    assert masker(MaskingRule("r", "full", columns=("email",)), tables={}).missing_tables(columns) == set()


def test_it_caches_plans_only_once_the_tables_are_known() -> None:
    tables: dict[int, tuple[str, str]] = {}
    rules = Masker((MaskingRule("r", "full", columns=("orders.email",)),), KEY, tables)
    columns = [column("email", table=USERS)]
    fail_closed = rules.for_columns(columns)
    assert fail_closed is not None  # users.email might be orders.email: masked until known
    tables[USERS] = ("public", "users")
    assert rules.for_columns(columns) is None
    assert rules.for_columns(columns) is rules.for_columns(list(columns))


# --- DataRow ------------------------------------------------------------------------------------


def test_it_skips_result_sets_with_nothing_to_mask() -> None:
    assert masker(SECRETS).for_columns([column("id", INT4), column("name")]) is None
    assert masker(PII).for_columns([column("id", INT4), column("at", 1184), column("uid", UUID)]) is None
    assert Masker((), KEY, {}).for_columns([column("password")]) is None
    assert not Masker((), KEY, {}).has_rules and masker().has_rules


def test_it_returns_an_unchanged_row_as_the_same_object() -> None:
    plan = masker().for_columns([column("id", INT4), column("note"), column("tags", TEXT_ARRAY)])
    payload = data_row(b"1", b"nothing secret here", b"{a,b}")
    assert plan.mask_row(payload) is payload


def test_it_passes_unmasked_columns_byte_identical() -> None:
    odd = b"caf\xc3\xa9 \xff\x00 raw"  # not UTF-8, a NUL: none of our business
    columns = [column("id", INT4), column("password"), column("note"), column("blob", 17)]
    got = mask(columns, b"42", b"hunter2", odd, b"\x00\x01@\x02")
    assert got == [b"42", b"********", odd, b"\x00\x01@\x02"]


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (MaskingRule("r", "full", columns=("secret",)), b"********"),
        (MaskingRule("r", "partial", columns=("secret",), keep=2), b"**********42"),
        (MaskingRule("r", "hash", columns=("secret",)), hash_mask(KEY, b"sk-answer-42").encode()),
        (MaskingRule("r", "null", columns=("secret",)), None),
    ],
)
@pytest.mark.parametrize("fmt", [0, 1])
def test_it_applies_each_style_to_a_text_column_in_both_formats(style, expected, fmt: int) -> None:
    assert mask([column("secret", VARCHAR, fmt)], b"sk-answer-42", rules=(style,)) == [expected]


def test_it_keeps_nulls_null() -> None:
    assert mask([column("password"), column("note")], None, None) == [None, None]


@pytest.mark.parametrize(
    ("oid", "text_value", "binary_value"),
    [
        (INT4, b"42", struct.pack("!i", 42)),
        (UUID, b"550e8400-e29b-41d4-a716-446655440000", bytes(16)),
        (1184, b"2024-01-15 10:30:00+00", bytes(8)),
        (TEXT_ARRAY, b"{a,b}", binary_array([b"a", b"b"])),
        (17, b"\\x00", b"\x00"),
    ],
)
def test_it_sends_null_for_a_non_text_column_a_rule_hits(oid: int, text_value: bytes, binary_value: bytes) -> None:
    assert mask([column("api_key", oid, 0)], text_value) == [None]
    assert mask([column("api_key", oid, 1)], binary_value) == [None]


@pytest.mark.parametrize(("name", "canary"), [(n, v) for n, values in CANARY_VARIANTS.items() for v in values])
@pytest.mark.parametrize("fmt", [0, 1])
def test_it_masks_every_canary_in_a_text_column(name: str, canary: str, fmt: int) -> None:
    value = f"contact: {canary} (kept)".encode()
    [masked] = mask([column("note", TEXT, fmt)], value)
    assert canary.removeprefix("Bearer ").encode() not in masked
    assert masked.startswith(b"contact: ") and masked.endswith(b" (kept)")


def test_it_masks_around_undecodable_bytes_and_keeps_them() -> None:
    [masked] = mask([column("note")], b"\xff\xfe bob@example.com \xe9")
    assert masked == b"\xff\xfe ***********.com \xe9"


def test_it_writes_a_json_column_rule_as_a_json_string() -> None:
    rules = (MaskingRule("r", "full", columns=("profile",)),)
    assert mask([column("profile", JSON)], b'{"a": 1}', rules=rules) == [b'"********"']
    [jsonb] = mask([column("profile", JSONB, 1)], b'\x01{"a": 1}', rules=rules)
    assert jsonb == b'\x01"********"' and load(JSONB, jsonb) == FULL_MASK
    hashed = mask([column("profile", JSONB)], b'{"a": 1}', rules=(MaskingRule("r", "hash", columns=("profile",)),))
    assert json.loads(hashed[0]) == hash_mask(KEY, b'{"a": 1}')


@pytest.mark.parametrize("fmt", [0, 1])
def test_it_masks_inside_json_strings_and_keeps_the_document_valid(fmt: int) -> None:
    document = {
        "email": "bob@example.com",
        "card": 4111111111111111,
        "nested": [{"jwt": CANARY_VARIANTS["jwt"][0]}, "plain"],
        "escaped": "x",
        "n": 3.5,
    }
    text = json.dumps(document).replace('"x"', '"bob\\u0040example.com"').encode()
    value = b"\x01" + text if fmt else text
    [masked] = mask([column("doc", JSONB, fmt)], value)
    decoded = load(JSONB, masked) if fmt else json.loads(masked)
    assert decoded == {
        "email": "***********.com",
        "card": "************1111",
        "nested": [{"jwt": "*" * (len(CANARY_VARIANTS["jwt"][0]) - 4) + "sw5c"}, "plain"],
        "escaped": "***********.com",
        "n": 3.5,
    }


@pytest.mark.parametrize("fmt", [0, 1])
def test_it_masks_json_members_named_like_a_masked_column(fmt: int) -> None:
    rules = (
        MaskingRule("secrets", "full", columns=("*password*",)),
        MaskingRule("refs", "hash", columns=("users.customer_ref",)),
        MaskingRule("gone", "null", columns=("api_key",)),
    )
    rows = [  # json_agg(u): nested objects, a key with an escape, values of every shape
        {"id": 1, "password_hash": "x1", "customer_ref": "C-1", "api_key": {"k": [1, "}"]}, "note": "ok"},
        {"id": 2, "Password": None, "customer_ref": 7, "api\u005fkey": [1, 2], "note": "password: x"},
    ]
    text = json.dumps(rows).replace("api\\\\u005fkey", "api\\u005fkey").encode()
    value = b"\x01" + text if fmt else text
    [masked] = mask([column("agg", JSONB, fmt, table=0)], value, rules=rules)
    decoded = load(JSONB, masked) if fmt else json.loads(masked)
    assert decoded == [
        {"id": 1, "password_hash": FULL_MASK, "customer_ref": hash_mask(KEY, b'"C-1"'), "api_key": None, "note": "ok"},
        {"id": 2, "Password": FULL_MASK, "customer_ref": hash_mask(KEY, b"7"), "api_key": None, "note": "password: x"},
    ]


def test_it_keeps_a_lone_surrogate_escape_valid_json() -> None:
    [masked] = mask([column("doc", JSON)], b'{"a": "\\ud800 bob@example.com"}')
    assert json.loads(masked.decode("utf-8")) == {"a": "\ud800 ***********.com"}


def test_it_leaves_json_without_matching_members_as_the_same_object() -> None:
    plan = masker(SECRETS).for_columns([column("doc", JSONB)])
    payload = data_row(b'{"note": "my password is safe", "id": 1}')
    assert plan.mask_row(payload) is payload


def test_it_scans_text_arrays_and_records_as_literals_in_text_format() -> None:
    columns = [column("tags", TEXT_ARRAY), column("row", RECORD, table=0), column("nick", CITEXT)]
    got = mask(columns, b'{bob@example.com,"a b"}', b"(1,+14155552671)", b"Bob@Example.com")
    assert got == [b'{***********.com,"a b"}', b"(1,********2671)", b"***********.com"]


def test_it_walks_binary_text_arrays_and_records_with_new_lengths() -> None:
    array = binary_array([b"x", b"bob@example.com", None])
    record = struct.pack("!i", 2) + struct.pack("!Ii", INT4, 4) + struct.pack("!i", 7)
    record += struct.pack("!Ii", TEXT, 12) + b"+14155552671"
    columns = [column("tags", TEXT_ARRAY, 1), column("row", RECORD, 1, table=0)]
    masked_array, masked_record = mask(columns, array, record)
    assert load(TEXT_ARRAY, masked_array) == ["x", "***********.com", None]
    assert masked_record == struct.pack("!i", 2) + record[4:16] + struct.pack("!Ii", TEXT, 12) + b"********2671"


def test_it_stops_walking_deeply_nested_binary_records() -> None:
    value = struct.pack("!Ii", TEXT, 15) + b"bob@example.com"
    for _ in range(2000):  # a record of a record of ... : no RecursionError, still masked
        value = struct.pack("!i", 1) + struct.pack("!Ii", RECORD, len(value)) + value
    [masked] = mask([column("row", RECORD, 1, table=0)], value)
    assert b"bob@" not in masked and len(masked) == len(value)


def test_it_overwrites_hits_in_unknown_binary_types_byte_for_byte() -> None:
    value = struct.pack("!i", 15) + b"bob@example.com" + b"\x00\x01"
    [masked] = mask([column("extension_value", CITEXT, 1)], value)
    assert masked == struct.pack("!i", 15) + b"*" * 15 + b"\x00\x01"


def test_it_leaves_binary_numbers_alone_even_when_their_bytes_look_like_text() -> None:
    plan = masker().for_columns([column("n", 20, 1), column("note", TEXT, 1)])
    payload = data_row(b"@@@@@@@@", b"clean")
    assert plan.mask_row(payload) is payload


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "does not have"),
        (data_row(b"a"), "does not have"),  # one value, two columns
        (data_row(b"a", b"b", b"c"), "does not have"),
        (data_row(b"a", b"b")[:-1], "runs past"),
        (struct.pack("!h", 2) + struct.pack("!i", 1) + b"a" + b"\x00\x00", "truncated"),  # half a length word
        (struct.pack("!h", 2) + struct.pack("!i", -2) + struct.pack("!i", 1) + b"b", "length -2"),
        (struct.pack("!h", 2) + struct.pack("!i", 1 << 30) + b"a", "runs past"),
        (data_row(b"a", b"b") + b"\x00", "trailing"),
    ],
)
def test_it_rejects_malformed_data_rows(payload: bytes, problem: str) -> None:
    plan = masker().for_columns([column("password"), column("note")])
    with pytest.raises(ValueError, match=problem):
        plan.mask_row(payload)


def test_it_rejects_a_malformed_binary_array_rather_than_pass_it() -> None:
    plan = masker().for_columns([column("tags", TEXT_ARRAY, 1)])
    broken = binary_array([b"bob@example.com"])[:-3]
    with pytest.raises(ValueError, match="binary element"):
        plan.mask_row(data_row(broken))


def test_it_plans_from_a_row_masker_alone() -> None:
    assert RowMasker([None], masker()).mask_row(data_row(b"x")) == data_row(b"x")


# --- text and bind parameters --------------------------------------------------------------


def test_it_masks_text_with_detectors_only() -> None:
    rules = masker()
    statement = "INSERT INTO users (email, password) VALUES ('bob@example.com', 'hunter2')"
    assert rules.mask_text(statement) == "INSERT INTO users (email, password) VALUES ('***********.com', 'hunter2')"
    clean = "SELECT 1"
    assert rules.mask_text(clean) is clean
    assert masker(SECRETS).mask_text("bob@example.com") == "bob@example.com"


def test_it_masks_raw_bytes_in_any_ascii_compatible_encoding() -> None:
    latin1 = "café bob@example.com".encode("latin-1")
    assert masker().mask_bytes(latin1) == "café ***********.com".encode("latin-1")


# --- COPY ------------------------------------------------------------------------------------------


def test_it_round_trips_copy_text_escapes() -> None:
    raw = "tab\there\nnew\\back\x08\x0c\r\x0b"
    encoded = copy_text_encode(raw.encode())
    assert encoded == b"tab\\there\\nnew\\\\back\\b\\f\\r\\v"
    assert copy_text_decode(encoded) == raw.encode()
    assert copy_text_decode(b"\\101\\x42\\q") == b"ABq"


def test_it_masks_copy_text_rows_by_column_position_and_detector() -> None:
    rules = masker()
    row = b"1\thunter2\tmail bob@example.com\\tnext\t\\N\n"
    masked = rules.mask_copy_row(row, ["id", "password", "note", "token"], csv=False)
    assert masked == b"1\t********\tmail ***********.com\\tnext\t\\N\n"


def test_it_matches_qualified_copy_columns_given_as_tuples() -> None:
    rules = masker(MaskingRule("r", "full", columns=("orders.email",)))
    row = b"bob@example.com\n"
    assert rules.mask_copy_row(row, [("billing", "orders", "email")], csv=False) == b"********\n"
    assert rules.mask_copy_row(row, [("public", "users", "email")], csv=False) is row
    assert rules.mask_copy_row(row, ["email"], csv=False) == b"********\n"  # table unknown: fail closed


def test_it_masks_every_copy_field_when_the_columns_are_unknown() -> None:
    rules = masker()
    row = b"1\tharmless\t\\N\n"
    assert rules.mask_copy_row(row, None, csv=False) == b"********\t********\t\\N\n"
    assert rules.mask_copy_row(row, ["id", "note"], csv=False) == b"********\t********\t\\N\n"  # count mismatch


def test_it_returns_a_clean_copy_row_as_the_same_object() -> None:
    row = b"1\tharmless text\t2024-01-15\n"
    assert masker(PII).mask_copy_row(row, None, csv=False) is row
    assert masker().mask_copy_row(row, ["id", "note", "day"], csv=False) is row


def test_it_masks_csv_rows_and_keeps_them_parseable() -> None:
    rules = masker()
    row = b'7,"say ""hi"", bob@example.com",,"","multi\nline +14155552671",hunter2\n'
    masked = rules.mask_copy_row(row, ["id", "note", "a", "b", "c", "password"], csv=True)
    assert list(csv.reader(io.StringIO(masked.decode()))) == [
        ["7", 'say "hi", ***********.com', "", "", "multi\nline ********2671", "********"]
    ]
    assert b',,"",' in masked  # NULL stays an unquoted empty field, the empty string stays ""


def test_it_masks_csv_with_another_delimiter() -> None:
    masked = masker(PII).mask_copy_row(b"1;bob@example.com\n", None, csv=True, delimiter=b";")
    assert masked == b"1;***********.com\n"


def test_it_splits_copy_text_on_unescaped_delimiters_only() -> None:
    rules = masker(MaskingRule("r", "full", columns=("secret",)), PII)
    row = b"1,a\\,b bob@example.com,x\\\\,\\N\n"  # fields: 1 | a,b bob@... | x\ | NULL
    masked = rules.mask_copy_row(row, ["id", "note", "secret", "other"], csv=False, delimiter=b",")
    assert masked == b"1,a\\,b ***********.com,********,\\N\n"


def test_it_rejects_a_csv_row_that_does_not_parse() -> None:
    with pytest.raises(ValueError, match="malformed row"):
        masker().mask_copy_row(b'1,"open quote\n', ["id", "note"], csv=True)


# --- ErrorResponse / NoticeResponse -------------------------------------------------------------


def error(**fields: str) -> bytes:
    return b"".join(code.encode() + value.encode() + b"\0" for code, value in fields.items()) + b"\0"


def test_it_masks_key_values_of_a_column_rule_column() -> None:
    rules = masker(MaskingRule("r", "full", columns=("users.email",)), PII)
    payload = error(
        S="ERROR", C="23505", M='duplicate key value violates unique constraint "users_email_key"',
        D="Key (email)=(bob.smith) already exists.", s="public", t="users",
    )  # fmt: skip
    fields = parse_error_fields(rules.mask_error_fields(payload))
    assert fields["D"] == "Key (email)=(********) already exists."
    assert fields["M"] == 'duplicate key value violates unique constraint "users_email_key"'
    other_table = payload.replace(b"tusers", b"torders")
    assert rules.mask_error_fields(other_table) is other_table


def test_it_masks_key_values_of_expression_and_multi_column_keys() -> None:
    rules = masker(MaskingRule("r", "hash", columns=("email",)))
    payload = error(S="ERROR", C="23505", D="Key (lower(email::text), tenant)=(bob (work), 7) already exists.")
    detail = parse_error_fields(rules.mask_error_fields(payload))["D"]
    assert detail == f"Key (lower(email::text), tenant)=({hash_mask(KEY, b'bob (work), 7')}) already exists."


def test_it_masks_a_failing_row_when_a_rule_could_apply_to_its_table() -> None:
    rules = masker(MaskingRule("r", "full", columns=("users.password",)))
    payload = error(S="ERROR", C="23502", D="Failing row contains (1, null, hunter2).", s="public", t="users", c="name")
    assert parse_error_fields(rules.mask_error_fields(payload))["D"] == "Failing row contains (********)."
    elsewhere = payload.replace(b"tusers", b"torders")
    assert rules.mask_error_fields(elsewhere) is elsewhere


def test_it_runs_detectors_over_message_detail_hint_context_and_query() -> None:
    payload = error(
        S="ERROR", C="22P02", M='invalid input syntax for type integer: "bob@example.com"',
        H="card 4111111111111111", W="SQL statement \"SELECT '+14155552671'\"", q="SELECT 'bob@example.com'",
    )  # fmt: skip
    fields = parse_error_fields(masker(PII).mask_error_fields(payload))
    assert fields["M"] == 'invalid input syntax for type integer: "***********.com"'
    assert fields["H"] == "card ************1111"
    assert "2671" in fields["W"] and "+1415" not in fields["W"]
    assert fields["q"] == "SELECT '***********.com'"
    assert fields["C"] == "22P02"


def test_it_returns_a_clean_error_as_the_same_object() -> None:
    payload = error(S="ERROR", C="42P01", M='relation "nope" does not exist')
    assert masker().mask_error_fields(payload) is payload


@pytest.mark.parametrize("payload", [b"SERROR\0C23505\0Mno terminator", b"SERROR\0C23505\0\0trailing", b""])
def test_it_replaces_a_malformed_error_with_a_safe_one(payload: bytes) -> None:
    masked = masker().mask_error_fields(payload)
    fields = parse_error_fields(masked)
    assert masked.endswith(b"\0\0")
    assert "withheld" in fields["M"]
    assert "terminator" not in masked.decode() and "trailing" not in masked.decode()


# --- statement texts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM users WHERE email = 'canary.alice@example.com'",
        "SELECT * FROM cards WHERE number = 4111111111111111",
        "SELECT $$canary.alice@example.com$$",
    ],
)
def test_it_masks_secrets_in_statement_literals(statement: str) -> None:
    masked = masker().mask_statement(statement)
    assert "canary.alice@example.com" not in masked and "4111111111111111" not in masked
    assert masked.startswith("SELECT ")


def test_the_literal_prefilter_finds_what_its_plain_form_finds() -> None:
    plain = re.compile(r"['$]|[0-9][0-9 ()+-]{6}")
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice("a'$0123 ()+-x9é\n") for _ in range(rng.randint(0, 14)))
        expected = plain.search(text) is not None
        assert (_SECRET_LITERAL.search(text) is not None, may_hold_secret(text)) == (expected, expected), text


def test_it_skips_statements_without_a_literal_that_could_hold_a_secret() -> None:
    statement = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345 AND AKIA = ABCDEFGHIJKLMNOP"
    assert masker().mask_statement(statement) is statement
