"""StreamMasker: terminal output masked by the content detectors, whatever the chunking.

The reference for "masked exactly as if it came in one chunk" is the same
masker fed the whole output at once, then flushed.
"""

import base64
import random

import pytest

from connections.policy.masking import FULL_MASK, hash_mask
from connections.policy.rules import DETECTORS, MaskingRule
from connections.protocols.ssh.stream_masker import (
    MAX_HELD,
    MAX_KEY_BLOCK,
    MAX_KEY_SWALLOW,
    MAX_STRING_HOLD,
    StreamMasker,
)
from tests.policy.canaries import AWS_KEY_ID, CANARIES, CANARY_VARIANTS, JWT

KEY = b"stream-masker-test-key"
RULES = [MaskingRule("pii", "full", detectors=DETECTORS)]
MASK = FULL_MASK.encode()
PROMPT = b"agent@build-7:~/src$ "
RANDOM = random.Random(20240611)


def masker(**options: int) -> StreamMasker:
    return StreamMasker(RULES, KEY, **options)


def run(chunks: list[bytes], stream: StreamMasker | None = None) -> bytes:
    """Feed the chunks in order, then flush: everything the client would see."""
    stream = stream or masker()
    out = b"".join(stream.feed(chunk) for chunk in chunks)
    return out + stream.flush()


def pem(size: int, label: str = "RSA PRIVATE KEY") -> bytes:
    """A PEM block of about `size` bytes, with terminal line endings."""
    body = base64.b64encode(RANDOM.randbytes(size * 3 // 4)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\r\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]).encode()


PEM_3K = pem(3000)
SPLIT_SECRETS = {
    "email": b"alice.smith@example.com",
    "card with spaces": b"4111 1111 1111 1111",
    "jwt": JWT.encode(),
    "aws key id": AWS_KEY_ID.encode(),
    "api token": CANARY_VARIANTS["api_token"][0].encode(),
    "bearer token": CANARY_VARIANTS["api_token"][-1].encode(),
    "private key block": PEM_3K,
}


def around(secret: bytes) -> bytes:
    return b"$ cat /etc/app/config\r\nvalue: " + secret + b"  # done\r\n" + PROMPT


# --- what is masked --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in CANARY_VARIANTS.items() for v in vs])
def test_it_masks_every_canary_in_terminal_output(name: str, value: str) -> None:
    text = around(value.replace("\n", "\r\n").encode())
    out = run([text])
    secret = value.removeprefix("Bearer ").encode()
    assert secret not in out
    assert MASK in out
    assert out.startswith(b"$ cat /etc/app/config\r\nvalue: ")
    assert out.endswith(b"  # done\r\n" + PROMPT)


@pytest.mark.parametrize("name", SPLIT_SECRETS)
def test_it_masks_a_secret_split_at_every_byte_as_in_one_chunk(name: str) -> None:
    text = around(SPLIT_SECRETS[name])
    whole = run([text])
    assert SPLIT_SECRETS[name].removeprefix(b"Bearer ") not in whole
    for cut in range(len(text) + 1):
        assert run([text[:cut], text[cut:]]) == whole, f"split at byte {cut}"


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in CANARY_VARIANTS.items() for v in vs])
def test_it_masks_every_canary_split_at_every_byte(name: str, value: str) -> None:
    text = around(value.replace("\n", "\r\n").encode())
    whole = run([text])
    for cut in range(len(text) + 1):
        assert run([text[:cut], text[cut:]]) == whole, f"split at byte {cut}"


def test_it_finds_an_aws_secret_by_its_label_across_chunks() -> None:
    key = b"wJalrXUtnFEMI0K7MDENG0bPxRfiCYEXAMPLEKEY"  # no '/' or '+': only the label tells
    text = b"[default]\r\naws_secret_access_key = " + key + b"\r\n" + PROMPT
    whole = run([text])
    assert key not in whole
    for cut in range(len(text) + 1):
        assert run([text[:cut], text[cut:]]) == whole


def test_it_uses_each_detectors_rule_style() -> None:
    rules = [
        MaskingRule("mail", "partial", detectors=("email",)),
        MaskingRule("keys", "hash", detectors=("aws_key",)),
    ]
    stream = StreamMasker(rules, KEY)
    out = run([b"to: alice@example.com id: " + AWS_KEY_ID.encode() + b"\r\n"], stream)
    assert out == b"to: *************.com id: " + hash_mask(KEY, AWS_KEY_ID.encode()).encode() + b"\r\n"


def test_it_needs_a_rule_with_detectors() -> None:
    with pytest.raises(ValueError, match="detector"):
        StreamMasker([MaskingRule("cols", "full", columns=("password",))], KEY)


def test_it_masks_only_with_the_detectors_named() -> None:
    stream = StreamMasker([MaskingRule("mail", "full", detectors=("email",))], KEY)
    text = b"alice@example.com " + AWS_KEY_ID.encode() + b"\r\n"
    assert run([text], stream) == MASK + b" " + AWS_KEY_ID.encode() + b"\r\n"


# --- consistency under any chunking ---------------------------------------------------------------

PIECES = [
    b"plain words and more words ",
    b"\x1b[01;34mdirectory\x1b[0m ",
    "déjà vu – naïve café ".encode(),
    b"\r\n",
    b"ls -l /var/log | grep 'error' > out.txt; ",
    b"\x1b]0;agent@host: ~\x07",
    b"\x1b[?2004h",
    b"2024-05-12 12:34:56,789 INFO [main] GET /api/v1/users/1234 200 ",
    b"\xff\xfe\xc3(",  # invalid UTF-8
    b"\t",
    b"\x08 \x08",
]
SECRETS = [value.replace("\n", "\r\n").encode() for values in CANARY_VARIANTS.values() for value in values]


def random_stream(rnd: random.Random, pieces: int) -> bytes:
    parts = []
    for _ in range(pieces):
        if rnd.random() < 0.25:
            secret = rnd.choice(SECRETS)
            if rnd.random() < 0.3:
                secret = b"\x1b[31m" + secret + b"\x1b[0m"
            parts.append(rnd.choice((b" ", b": ", b"\r\n", b"=")) + secret + rnd.choice((b" ", b"\r\n", b",")))
        else:
            parts.append(rnd.choice(PIECES))
    return b"".join(parts)


def random_chunks(rnd: random.Random, data: bytes) -> list[bytes]:
    chunks, pos = [], 0
    while pos < len(data):
        size = rnd.choice((1, 2, 3, 7, 16, 64, 300, 2000))
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


@pytest.mark.parametrize("seed", range(40))
def test_it_gives_the_same_output_for_any_chunking(seed: int) -> None:
    # Without the echo exception, output depends on content alone, never on chunk boundaries.
    rnd = random.Random(seed)
    data = random_stream(rnd, 60)
    whole = run([data], masker(echo_bytes=0))
    for _ in range(5):
        assert run(random_chunks(rnd, data), masker(echo_bytes=0)) == whole
    for secret in SECRETS:
        if secret.startswith(b"-----BEGIN"):
            secret = secret.splitlines()[1]  # the key material
        assert secret.removeprefix(b"Bearer ") not in whole


def test_it_passes_output_without_secrets_unchanged_in_any_chunking() -> None:
    rnd = random.Random(7)
    data = b"".join(rnd.choice(PIECES) for _ in range(400))
    assert run([data]) == data
    assert run(random_chunks(rnd, data)) == data
    assert run([bytes([byte]) for byte in data]) == data


def test_it_keeps_random_bytes_unchanged_when_nothing_is_found() -> None:
    data = random.Random(3).randbytes(200_000)
    assert run([data[i : i + 32768] for i in range(0, len(data), 32768)]) == data


# --- escape sequences ----------------------------------------------------------------------------

SEQUENCES = [
    b"\x1b[31m",
    b"\x1b[38;5;208m",
    b"\x1b[?2004h",
    b"\x1b[K",
    b"\x1b]0;agent@build.example.com: ~/src\x07",  # OSC title, BEL-terminated; an email-like inside
    b"\x1b]2;title\x1b\\",  # ST-terminated
    b"\x1bPq#0;2;0;0;0#1;2;100;100;0\x1b\\",  # DCS (sixel)
    b"\x1b(B",
    b"\x1b7",
]


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_it_never_splits_or_alters_an_escape_sequence(sequence: bytes) -> None:
    text = b"before " + sequence + b" after\r\n"
    for cut in range(len(text) + 1):
        stream = masker()
        first = stream.feed(text[:cut])
        start = text.index(sequence)
        if start < cut < start + len(sequence):
            assert text[:start].startswith(first), f"split at {cut}: {first!r}"
        assert first + stream.feed(text[cut:]) + stream.flush() == text


def test_it_masks_secrets_with_colour_codes_around_them() -> None:
    email = b"alice@example.com"
    text = b"\x1b[1;31m" + email + b"\x1b[0m\x1b[K " + AWS_KEY_ID.encode() + b"\x1b[m\r\n"
    whole = run([text])
    assert whole == b"\x1b[1;31m" + MASK + b"\x1b[0m\x1b[K " + MASK + b"\x1b[m\r\n"
    for cut in range(len(text) + 1):
        assert run([text[:cut], text[cut:]]) == whole


def test_it_keeps_escape_sequences_inside_a_masked_key_block() -> None:
    key = pem(600)
    coloured = key.replace(b"\r\n", b"\x1b[K\r\n")
    out = run([b"\x1b[33m" + coloured + b"\x1b[0m\r\n"])
    assert out == b"\x1b[33m" + MASK + b"\x1b[K" * coloured.count(b"\x1b[K") + b"\x1b[0m\r\n"


def test_it_passes_a_long_string_sequence_through_unscanned() -> None:
    # An inline image (OSC 1337) longer than the hold: its payload may look like anything.
    payload = (b"A" * 30 + b"+/" + b"b" * 8) * 400 + b"alice@example.com"
    image = b"\x1b]1337;File=inline=1:" + payload + b"\x07"
    text = b"img: " + image + b" mail alice@example.com\r\n"
    assert len(image) > MAX_STRING_HOLD
    whole = run([text])
    assert whole == b"img: " + image + b" mail " + MASK + b"\r\n"
    for cut in (3, 10, 100, 2000, 5000, len(text) - 10):
        assert run([text[:cut], text[cut:]]) == whole
    assert run(random_chunks(random.Random(1), text)) == whole


# --- what is held, and for how long --------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt", [PROMPT, b"root@db:/# ", b"Password: ", b"Continue? [y/N] ", b">>> ", "❯ ".encode(), b"mysql> "]
)
def test_it_does_not_hold_a_prompt(prompt: bytes) -> None:
    stream = masker()
    assert stream.feed(b"last line of output\r\n" + prompt) == b"last line of output\r\n" + prompt
    assert not stream.holding


def test_it_releases_whole_lines_at_once() -> None:
    stream = masker()
    text = b"total 12\r\n-rw-r--r-- 1 agent agent 220 Jan  1 12:00 notes.txt\r\n"
    assert stream.feed(text) == text
    assert not stream.holding


def test_it_holds_a_word_that_may_continue_and_releases_it_on_flush() -> None:
    stream = masker()
    assert stream.feed(b"Downloading packages: alpha beta") == b"Downloading packages: "
    assert stream.holding
    assert stream.held_bytes == len(b"alpha beta")
    assert 0 < stream.hold_seconds <= 0.1  # the engine's timer: short enough not to be seen
    assert stream.flush() == b"alpha beta"
    assert not stream.holding
    assert stream.flush() == b""


def test_it_echoes_typed_keys_at_once_after_a_prompt() -> None:
    stream = masker()
    assert stream.feed(PROMPT) == PROMPT
    for key in b"ls -la":
        assert stream.feed(bytes([key])) == bytes([key])
        assert not stream.holding
    assert stream.feed("é".encode()) == "é".encode()


def test_it_does_not_mask_a_secret_typed_one_key_at_a_time_in_its_echo() -> None:
    # The documented trade-off: an echo is released as it comes.
    stream = masker()
    stream.feed(PROMPT)
    typed = b"echo alice@example.com"
    assert b"".join(stream.feed(bytes([key])) for key in typed) == typed
    # The command's output is masked as usual.
    assert stream.feed(b"\r\nalice@example.com\r\n" + PROMPT) == b"\r\n" + MASK + b"\r\n" + PROMPT


def test_it_holds_a_short_chunk_that_starts_a_line() -> None:
    stream = masker()
    assert stream.feed(b"out\r\n") == b"out\r\n"
    assert stream.feed(b"ali") == b""  # not an echo: a line's first bytes
    assert stream.feed(b"ce@example.com\r\n") == MASK + b"\r\n"


def test_it_masks_the_rest_of_a_secret_after_a_timer_flush() -> None:
    stream = masker()
    out = stream.feed(b"token: ghp_0123456789")
    out += stream.flush()  # the output paused mid-token
    out += stream.feed(b"abcdefghijklmnopqrstuvwxyz\r\n")
    assert out == b"token: ghp_0123456789" + MASK + b"\r\n"


def test_it_bounds_what_it_holds() -> None:
    stream = masker()
    data = b"x" * (5 * MAX_HELD)
    out = b""
    for pos in range(0, len(data), 1000):
        out += stream.feed(data[pos : pos + 1000])
        assert stream.held_bytes <= MAX_HELD
    assert out + stream.flush() == data


def test_it_never_holds_more_than_a_key_block() -> None:
    stream = masker()
    data = b"key:\r\n" + pem(40_000) + b"\r\n" + PROMPT
    for pos in range(0, len(data), 500):
        stream.feed(data[pos : pos + 500])
        assert stream.held_bytes <= MAX_KEY_BLOCK
    stream.flush()


# --- private key blocks ---------------------------------------------------------------------------


def test_it_masks_a_key_block_that_arrives_line_by_line() -> None:
    key = pem(2400)
    text = b"$ cat id_rsa\r\n" + key + b"\r\n" + PROMPT
    lines = text.splitlines(keepends=True)
    assert run(lines) == run([text]) == b"$ cat id_rsa\r\n" + MASK + b"\r\n" + PROMPT


def test_it_masks_a_key_block_longer_than_it_holds_conservatively() -> None:
    style_rules = [MaskingRule("keys", "hash", detectors=("private_key",))]
    key = pem(MAX_KEY_BLOCK + 4000, "PGP PRIVATE KEY BLOCK")
    text = b"key:\r\n" + key + b"\r\nafter the key\r\n"
    expected = b"key:\r\n" + MASK + b"\r\nafter the key\r\n"  # "********" whatever the style
    assert run([text], StreamMasker(style_rules, KEY)) == expected
    for size in (1, 100, 4096, 32768):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert run(chunks, StreamMasker(style_rules, KEY)) == expected


def test_it_drops_the_rest_of_a_key_block_flushed_while_open() -> None:
    key = pem(2000)
    stream = masker()
    out = stream.feed(b"key:\r\n" + key[:700])
    assert out == b"key:\r\n"
    out += stream.flush()  # the host paused in the middle of the key
    out += stream.feed(key[700:] + b"\r\n" + PROMPT)
    assert out == b"key:\r\n" + MASK + b"\r\n" + PROMPT


def test_it_gives_up_on_a_key_block_without_end_line_after_a_bound() -> None:
    truncated = pem(3000).rsplit(b"\r\n", 3)[0]  # `head` cut the END line off
    later = b"".join(b"line %d of later output\r\n" % i for i in range(8000))
    text = truncated + b"\r\n" + later
    # Dropped from its BEGIN line for MAX_KEY_SWALLOW bytes, then output resumes.
    assert run([text[i : i + 4096] for i in range(0, len(text), 4096)]) == MASK + text[MAX_KEY_SWALLOW:]
    assert run([text]) == MASK + text[MAX_KEY_SWALLOW:]


# --- UTF-8 --------------------------------------------------------------------------------------------


def test_it_keeps_multibyte_characters_split_across_chunks() -> None:
    text = "Größe: 12 ☃ — naïve 東京 ❯ \r\n".encode() + PROMPT
    for cut in range(len(text) + 1):
        assert run([text[:cut], text[cut:]]) == text


def test_it_masks_a_unicode_email_split_inside_a_character() -> None:
    email = "josé.müller@exämple.de".encode()
    text = b"contact: " + email + b"\r\n"
    assert run([text]) == b"contact: " + MASK + b"\r\n"
    for cut in range(len(text) + 1):
        assert run([text[:cut], text[cut:]]) == b"contact: " + MASK + b"\r\n"


def test_it_passes_invalid_utf8_unchanged_outside_masked_spans() -> None:
    text = b"\xff\xfe bin \xc3( alice@example.com \x80\x81\r\n"
    assert run([text]) == b"\xff\xfe bin \xc3( " + MASK + b" \x80\x81\r\n"


def test_it_takes_empty_chunks() -> None:
    stream = masker()
    assert stream.feed(b"") == b""
    assert stream.flush() == b""
    assert CANARIES["email"].encode() not in run([b"", CANARIES["email"].encode(), b""])
