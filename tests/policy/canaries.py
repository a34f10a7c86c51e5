"""Canary secrets of every detector type, to seed a database and look for leaks.

`CANARIES` maps each detector name (connections.policy.rules.DETECTORS) to one
value that detector must find; `CANARY_VARIANTS` gives several shapes per
detector. Every value is fake: test card numbers, AWS's documented example
keys, the jwt.io sample token, a PEM block around random bytes. Provider
tokens are assembled from parts so that secret scanners (GitHub push
protection and the like) do not mistake this file for a leak.
"""

import base64
import random

_RANDOM = random.Random(20240115)  # deterministic: the same canaries every run


def _alnum(count: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(_RANDOM.choice(alphabet) for _ in range(count))


def _pem(kind: str) -> str:
    body = base64.b64encode(_RANDOM.randbytes(180)).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    label = f"{kind} PRIVATE KEY" if kind else "PRIVATE KEY"
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

CANARY_VARIANTS: dict[str, tuple[str, ...]] = {
    "email": ("canary.alice@example.com", "bob+billing@mail.example.co.uk"),
    "credit_card": ("4111 1111 1111 1111", "5555555555554444", "3782-822463-10005", "4222222222222"),
    "iban": ("GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "FR1420041010050500013M02606"),
    "ssn": ("123-45-6789", "078-05-1120"),
    "phone": ("+14155552671", "+44 20 7946 0958", "+1 (415) 555-2671"),
    "jwt": (JWT,),
    "aws_key": (AWS_KEY_ID, AWS_SECRET),
    "private_key": (_pem("RSA"), _pem(""), _pem("OPENSSH")),
    "api_token": (
        "ghp" + "_" + _alnum(36),
        "github" + "_pat_" + _alnum(22) + "_" + _alnum(59),
        "gh_" + "k3x9q2ab_" + _alnum(43),
        "xox" + "b-" + "1234567890-" + _alnum(24),
        "sk" + "_live_" + _alnum(24),
        "sk" + "-proj-" + _alnum(48),
        "glpat" + "-" + _alnum(20),
        "AIza" + "Sy" + _alnum(33),
        "Bearer " + _alnum(32),
    ),
}

CANARIES: dict[str, str] = {name: values[0] for name, values in CANARY_VARIANTS.items()}
