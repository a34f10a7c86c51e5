"""Content detectors: find secrets and personal data inside text, whatever the column.

A `DetectorSet` is compiled once per masking policy from detector names
(`connections.policy.rules.DETECTORS`). It answers two questions:

- `features(data)`: the prefilter, on raw bytes. One `bytes.translate` into
  a class string, then a handful of substring tests on it (each a C-level
  search); the result has one bit per detector that may match, and 0, the
  answer for almost every value, means none can. About 0.4 µs for 100 bytes
  on the development machine, against about 15 µs for one regex alternation
  of all detectors (Python's regex engine tries every branch at every
  position) and 0.8 µs for a single-character-class regex scan.
- `find(text)`: the non-overlapping spans `(start, end, detector)` of real
  hits. Only the detectors whose bit is set run; their validators (Luhn, IBAN
  mod 97, JWT header, AWS secret shape) run only on regex candidates.

The rules, and what is deliberately not detected:

- email: local@domain.tld (Unicode letters allowed, TLD of letters).
- credit_card: 13 to 19 digits, optionally grouped by single spaces or dashes,
  first digit 2 to 6 (every major network: Mir, Mastercard 2-series, Amex,
  Diners, JCB, Visa, Mastercard, Discover, UnionPay, Maestro), Luhn-valid.
  A longer grouped run is cut at a group boundary ("4111 1111 1111 1111 12/25"
  still finds the card). Ungrouped runs longer than 19 digits are not cards.
- iban: two upper-case letters of a country in the IBAN registry, two check
  digits, the country's exact length, mod-97 checksum; compact or in groups
  of four. Lower-case IBANs are not detected (hex strings would pass 1 in 97).
- ssn: ddd-dd-dddd with the dashes, excluding area 000, 666 and 900-999,
  group 00 and serial 0000.
- phone: E.164, "+" then 8 to 15 digits, separators ' ', '.', '-', '(' and ')'.
- jwt: three base64url segments (the signature may be empty) whose first
  segment decodes to a JSON object with an "alg" member.
- aws_key: access key ids AKIA/ASIA + 16 upper-case letters or digits; and
  secret keys: a run of exactly 40 characters of [A-Za-z0-9/+] with at least
  one upper-case letter, one lower-case letter and one digit, and one of:
  "aws" or "secret" (any case) in the 80 characters before it; the run is the
  whole value; or the run contains '/' or '+'. So a git SHA-1 (lower-case hex)
  never matches, and a random 40-character base62 id in prose does not
  either, unless it sits next to an AWS or secret label.
- private_key: "-----BEGIN ... PRIVATE KEY-----" through the matching END
  line; with no END line, through the end of the text (fail closed).
- api_token: "Bearer <token>" (the token only, 16+ characters), GitHub
  ghp_/gho_/ghu_/ghs_/ghr_ and github_pat_, Slack xox[baprs]-, Stripe
  sk_live_/sk_test_/rk_live_/rk_test_, OpenAI-style sk-..., GitLab glpat-,
  Google AIza..., and Gatehouse's own gh_<prefix>_<secret>.

The prefilter is a sound superset of every rule above except two narrow
cases, by design: a card grouped by dashes needs four digits on each side of
one of its dashes ("4111-1111-..." and Amex "3782-822463-..." pass; "41-11-..."
does not), and an AWS secret key needs two adjacent upper-case letters, a '+'
or a '/' (a random 40-character key lacks all three about once in 10,000).
"""

import base64
import binascii
import json
import re
import string
from collections.abc import Callable, Iterable

# --- Prefilter: character classes and features ---------------------------------

# Every byte becomes its class: digits and space '0', upper-case letters 'A',
# while lower-case letters and '@', '+', '-', '_', '/' stay themselves; other
# bytes (punctuation, >= 0x80) become '.'. Spaces count as digits so that one
# search finds "4111111111111111" and "4111 1111 1111 1111" alike; lower case
# stays so that literal prefixes ("sk-", "xox", "earer") can be tested. The
# first pass folds '@', '+', '_' and '/' into '!': most values have none, and
# four tests become one ('-' stays, as dates and ids are full of it).
_PUNCTUATION = b"@+-_/"


def _class_table(fold: bytes) -> bytes:
    table = bytearray(b"." * 256)
    for byte in range(256):
        if 48 <= byte <= 57 or byte == 32:
            table[byte] = ord("0")
        elif 65 <= byte <= 90:
            table[byte] = ord("A")
        elif 97 <= byte <= 122 or byte in _PUNCTUATION:
            table[byte] = ord("!") if byte in fold else byte
    return bytes(table)


_FIRST_PASS = _class_table(b"@+_/")
_CLASSES = _class_table(b"")
_RUN13 = "0" * 13  # 13 digits, possibly grouped by spaces: the shortest card

# One prefilter bit per detector.
EMAIL = 1
CREDIT_CARD = 2
IBAN = 4
SSN = 8
PHONE = 16
JWT = 32
AWS_KEY = 64
PRIVATE_KEY = 128
API_TOKEN = 256


def encode_text(text: str) -> bytes:
    """UTF-8 bytes of a text; characters decoded with "surrogateescape" turn back into their bytes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate from elsewhere, such as a JSON "\ud800" escape
        return text.encode("utf-8", "surrogatepass")


def classes_of(data: bytes) -> str:
    """The class string the prefilter tests, one character per byte of `data`."""
    return data.translate(_CLASSES).decode("ascii")


def byte_features(data: bytes) -> int:
    """The prefilter: a bit per detector that may match `data`; 0 for most clean values."""
    # str membership is a C search (memchr for one character); on bytes it is
    # several times slower.
    classes = data.translate(_FIRST_PASS).decode("ascii")
    found = 0
    if "!" in classes:
        found = _punctuation_features(data.translate(_CLASSES).decode("ascii"))
    if "-" in classes:
        found |= _dash_features(classes)
    if _RUN13 in classes:
        found |= CREDIT_CARD
    if "AA" in classes:
        found |= _caps_features(classes)
    if "earer" in classes:
        found |= API_TOKEN
    if "eyA" in classes:
        found |= JWT
    return found


def _punctuation_features(classes: str) -> int:
    found = 0
    if "@" in classes:
        found = EMAIL
    if "+" in classes:
        found |= PHONE
    if ("/" in classes or "+" in classes) and "A" in classes:
        found |= AWS_KEY  # a secret key has a capital, and these when it lacks two in a row
    if "_" in classes and _has_underscore_token(classes):
        found |= API_TOKEN
    return found


def _has_underscore_token(classes: str) -> bool:
    return "gh" in classes or "k_live_" in classes or "k_test_" in classes or "github_pat_" in classes


def _dash_features(classes: str) -> int:
    found = 0
    if "0000-0000" in classes:
        found = CREDIT_CARD
    if "000-00-0000" in classes:
        found |= SSN
    if "-----" in classes:
        found |= PRIVATE_KEY
    if "sk-" in classes or "xox" in classes or "glpat-" in classes:
        found |= API_TOKEN
    return found


def _caps_features(classes: str) -> int:
    found = AWS_KEY  # AKIA/ASIA, and a secret key almost always has two adjacent capitals
    if "AA00" in classes:
        found |= IBAN
    if "AAza" in classes or "AAAAAA" in classes:  # AIza..., BEARER
        found |= API_TOKEN
    return found


# --- Validators ------------------------------------------------------------------

_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of ASCII digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        total += _LUHN_DOUBLED[digit] if index & 1 else digit
    return total % 10 == 0


# IBAN lengths by country (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(compact: str) -> bool:
    """Country length and mod-97 checksum of an IBAN without spaces, upper case."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def jwt_header_valid(segment: str) -> bool:
    """Whether a base64url segment decodes to a JSON object with an "alg" member."""
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(header, dict) and "alg" in header


# --- Finders ------------------------------------------------------------------------

Span = tuple[int, int]
Finder = Callable[[str], Iterable[Span]]

_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TOKEN_CHARS = _ALNUM | {"_", "-"}


def _regex_finder(pattern: str, group: int = 0) -> Finder:
    compiled = re.compile(pattern)

    def find(text: str) -> Iterable[Span]:
        return [match.span(group) for match in compiled.finditer(text)]

    return find


_EMAIL = re.compile(r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,63}(?![\w-])")
_EMAIL_LOCAL = re.compile(r"[\w.%+-]{1,64}$")


def _find_emails(text: str) -> Iterable[Span]:
    # Anchored on '@' then walked left: a left-anchored local-part regex would
    # retry at every character of a long word.
    spans = []
    for match in _EMAIL.finditer(text):
        at = match.start()
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        if local is not None and not local.group().startswith("."):
            spans.append((local.start(), match.end()))
    return spans


# Long texts (terminal output, big values) are first cut into the runs that could hold a hit: the text
# mapped to one character class by str.translate, then a literal search for the shortest hit's run of
# that class. Python's regex engine tries a pattern at every position, and a pattern that starts with a
# character class (digits, letters) cannot skip ahead as one that starts with a literal can; on log
# lines this cut makes those finders several times faster. A hit consists only of its class's
# characters, so it lies inside one maximal run, and the finder's own regex on the run (with the
# character after it in view) finds exactly what it finds on the whole text.
_SCAN_WHOLE_CHARS = 256  # shorter texts, and texts with other than ASCII, go straight to the finder's regex


def _class_runs(core: str, shortest: int, fill: str = "") -> Callable[[str], Iterable[Span]]:
    """A function giving the (start, end + 1) of each maximal run of `core` and `fill` characters
    that holds at least `shortest` `core` characters."""
    table = str.maketrans({**dict.fromkeys(map(chr, range(128)), "."), **dict.fromkeys(core + fill, "#")})
    run = re.compile("#" * shortest + "+")  # a literal prefix: the engine skips ahead to each candidate

    def long_enough(text: str, start: int, end: int) -> bool:
        return end - start - sum(text.count(char, start, end) for char in fill) >= shortest

    def runs(text: str) -> Iterable[Span]:
        if len(text) < _SCAN_WHOLE_CHARS or not text.isascii():  # str.translate is fast on ASCII only
            return ((0, len(text)),)
        spans = (match.span() for match in run.finditer(text.translate(table)))
        return ((start, end + 1) for start, end in spans if not fill or long_enough(text, start, end))

    return runs


def _hits(pattern: re.Pattern, runs: Callable[[str], Iterable[Span]], text: str) -> Iterable[re.Match]:
    """The matches of `pattern` in `text`, looked for only inside `runs(text)`."""
    for start, end in runs(text):
        yield from pattern.finditer(text, start, end)


_CARD = re.compile(r"[2-6](?:[ -]?[0-9]){12,18}(?![0-9])")
_CARD_RUNS = _class_runs(string.digits, 13, fill=" -")


def _find_cards(text: str) -> Iterable[Span]:
    spans = []
    for match in _hits(_CARD, _CARD_RUNS, text):
        start = match.start()
        before = text[start - 1] if start else " "
        if before in _ALNUM or (before == "-" and start > 1 and text[start - 2].isdigit()):
            continue  # inside a longer number or word
        span = _card_prefix(match.group())
        if span is not None:
            spans.append((start, start + span))
    return spans


def _card_prefix(candidate: str) -> int | None:
    """Length of the longest Luhn-valid prefix of 13-19 digits ending at a group boundary."""
    ends = [index + 1 for index, char in enumerate(candidate) if char not in " -"]
    for count in range(min(len(ends), 19), 12, -1):
        end = ends[count - 1]
        if end < len(candidate) and candidate[end] not in " -":
            continue  # would cut a group in two
        if luhn_valid(candidate[:end].replace(" ", "").replace("-", "")):
            return end
    return None


_IBAN = re.compile(r"[A-Z][A-Z][0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)")


def _find_ibans(text: str) -> Iterable[Span]:
    spans = []
    for match in _IBAN.finditer(text):
        start, candidate = match.start(), match.group()
        if start and text[start - 1] in _ALNUM:
            continue
        length = IBAN_LENGTHS.get(candidate[:2])
        compact = candidate.replace(" ", "")
        if length is None or len(compact) < length:
            continue
        # Cut at the country's length: "GB82 WEST ... 32 EUR" must still count.
        end, seen = 0, 0
        while seen < length:
            seen += candidate[end] != " "
            end += 1
        after = start + end
        if after < len(text) and text[after] in _ALNUM:
            continue
        if iban_valid(compact[:length]):
            spans.append((start, after))
    return spans


_JWT = re.compile(r"e(?<![A-Za-z0-9_-]e)yJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?![A-Za-z0-9_-])")


def _find_jwts(text: str) -> Iterable[Span]:
    return [match.span() for match in _JWT.finditer(text) if jwt_header_valid(match.group().split(".", 1)[0])]


_AWS_KEY_ID = re.compile(r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)[0-9A-Z]{16}(?![A-Za-z0-9])")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+](?<![A-Za-z0-9/+].)[A-Za-z0-9/+]{39}(?![A-Za-z0-9/+=])")
_AWS_SECRET_RUNS = _class_runs(string.ascii_letters + string.digits + "/+", 40)
_AWS_CONTEXT = ("aws", "secret")


def _find_aws_keys(text: str) -> Iterable[Span]:
    spans = []
    if "AKIA" in text or "ASIA" in text:
        spans = [match.span() for match in _AWS_KEY_ID.finditer(text)]
    if len(text) >= 40:
        spans.extend(_find_aws_secrets(text))
    return spans


def _find_aws_secrets(text: str) -> Iterable[Span]:
    # Cheap gates first: the 40-character regex visits every letter of a text.
    whole = len(text.strip()) == 40
    lowered = text.lower()
    context = "aws" in lowered or "secret" in lowered
    if not (whole or context or "/" in text or "+" in text):
        return
    for match in _hits(_AWS_SECRET, _AWS_SECRET_RUNS, text):
        secret = match.group()
        if secret.islower() or secret.isupper() or not any(char.isdigit() for char in secret):
            continue  # needs upper, lower and a digit: hex digests never qualify
        start = match.start()
        labelled = context and any(word in lowered[max(0, start - 80) : start] for word in _AWS_CONTEXT)
        if whole or labelled or "/" in secret or "+" in secret:
            yield match.span()


_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----")
_PEM_END = re.compile(r"-----END ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----")


def _find_private_keys(text: str) -> Iterable[Span]:
    spans = []
    pos = 0
    while (begin := _PEM_BEGIN.search(text, pos)) is not None:
        end = _PEM_END.search(text, begin.end())
        stop = end.end() if end is not None else len(text)  # unterminated: mask to the end
        spans.append((begin.start(), stop))
        pos = stop
    return spans


# Every branch starts with a literal, so the regex engine skips to candidate letters.
_API_TOKEN = re.compile(
    r"(?:Bearer|bearer|BEARER)[ \t]+(?P<bearer>[A-Za-z0-9._~+/=-]{16,})"
    r"|g(?:h[pousr]_[A-Za-z0-9]{20,}|ithub_pat_[A-Za-z0-9_]{20,}|h_[a-z0-9]{8}_[A-Za-z0-9_-]{20,}|lpat-[A-Za-z0-9_-]{20,})"
    r"|xox[baprs]-[A-Za-z0-9-]{10,}"
    r"|rk_(?:live|test)_[A-Za-z0-9]{10,}"
    r"|s(?:k_(?:live|test)_[A-Za-z0-9]{10,}|k-[A-Za-z0-9_-]{20,})"
    r"|AIza[0-9A-Za-z_-]{35}"
)


def _find_api_tokens(text: str) -> Iterable[Span]:
    spans = []
    for match in _API_TOKEN.finditer(text):
        start = match.start()
        if start and text[start - 1] in _TOKEN_CHARS:
            continue  # "task-..." is not "sk-...", "xghp_" not "ghp_"
        spans.append(match.span("bearer") if match.group("bearer") else match.span())
    return spans


_PHONE = r"\+(?<![A-Za-z0-9_+)]\+)[ (]{0,2}[1-9](?:[ .()-]{0,2}[0-9]){7,14}(?![0-9])"


class Detector:
    """One named detector: its prefilter bit, its finder and the shortest text it can match."""

    __slots__ = ("name", "bit", "find", "min_length")

    def __init__(self, name: str, bit: int, find: Finder, min_length: int) -> None:
        self.name = name
        self.bit = bit
        self.find = find
        self.min_length = min_length


_SSN = re.compile(r"[0-8](?<![0-9-][0-8])[0-9]{2}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![0-9-])")
_SSN_RUNS = _class_runs(string.digits + "-", 11)


def _find_ssns(text: str) -> Iterable[Span]:
    # The first digit excludes area 9xx; 000 and 666 are checked here.
    return [match.span() for match in _hits(_SSN, _SSN_RUNS, text) if match.group()[:3] not in ("000", "666")]


DETECTORS: dict[str, Detector] = {
    detector.name: detector
    for detector in (
        Detector("email", EMAIL, _find_emails, 6),
        Detector("credit_card", CREDIT_CARD, _find_cards, 13),
        Detector("iban", IBAN, _find_ibans, 15),
        Detector("ssn", SSN, _find_ssns, 11),
        Detector("phone", PHONE, _regex_finder(_PHONE), 9),
        Detector("jwt", JWT, _find_jwts, 16),
        Detector("aws_key", AWS_KEY, _find_aws_keys, 20),
        Detector("private_key", PRIVATE_KEY, _find_private_keys, 30),
        Detector("api_token", API_TOKEN, _find_api_tokens, 13),
    )
}


class DetectorSet:
    """A compiled group of detectors; `find` gives their non-overlapping hits in a text."""

    __slots__ = ("names", "detectors", "features_needed", "min_length")

    def __init__(self, names: Iterable[str]) -> None:
        unique = list(dict.fromkeys(names))
        unknown = [name for name in unique if name not in DETECTORS]
        if unknown:
            raise ValueError(f"unknown detectors: {', '.join(unknown)}")
        self.names = tuple(unique)
        self.detectors = tuple(DETECTORS[name] for name in unique)
        self.features_needed = 0
        for detector in self.detectors:
            self.features_needed |= detector.bit
        self.min_length = min((detector.min_length for detector in self.detectors), default=0)

    def features(self, data: bytes) -> int:
        """The prefilter on raw bytes (UTF-8 or any ASCII-compatible encoding): 0 means no hit possible."""
        if len(data) < self.min_length or not self.detectors:
            return 0
        return byte_features(data) & self.features_needed

    def find(self, text: str, features: int | None = None) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, detector name) hits, in text order.

        `features` is what `features()` returned for the same value, to skip
        recomputing it. Where hits overlap, the earliest wins, then the
        longest, then the detector named first.
        """
        if features is None:
            features = self.features(encode_text(text))
        if not features:
            return []
        hits = []
        for order, detector in enumerate(self.detectors):
            if features & detector.bit:
                hits.extend((start, end, order) for start, end in detector.find(text) if end > start)
        if not hits:
            return []
        hits.sort(key=lambda hit: (hit[0], hit[0] - hit[1], hit[2]))
        spans: list[tuple[int, int, str]] = []
        last_end = -1
        for start, end, order in hits:
            if start >= last_end:
                spans.append((start, end, self.names[order]))
                last_end = end
        return spans
