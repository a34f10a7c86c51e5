"""Masking cost: what the masker adds to each DataRow, with no network in the way.

Uses bench/pg_bench.py's masking rules ("secrets": full on *password*,
api_key, *.token; "pii": partial with six detectors) and prints:

- masking 100 rows of 4 text columns (2 masked by column rule, 2 scanned by
  detectors, every 10th row carrying canaries in the scanned columns), in
  milliseconds: with the plan cached (every result set after the first) and
  from a fresh Masker (the first result set of a session);
- per-row cost in microseconds for clean rows, canary rows, and rows shaped
  like pg_bench's 1,000,000-row masked stream (id, 2 masked, 2 scanned);
- the detector prefilter per value, for clean values of a few shapes, and a
  full `find` on a value that holds a canary.

Each figure is the median of several runs (time.perf_counter). Run
`python bench/masking_cost.py [--runs N]`; bench/pg_bench.py calls `measure()`.
"""

import argparse
import hashlib
import statistics
import struct
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: the repo's packages are not on the path otherwise

from connections.policy.detectors import DetectorSet  # noqa: E402
from connections.policy.masking import Masker  # noqa: E402
from connections.policy.rules import MaskingRule  # noqa: E402
from connections.protocols.pgwire.messages import Column  # noqa: E402
from tests.policy.canaries import CANARIES  # noqa: E402

DEFAULT_RUNS = 9
KEY = b"bench-deployment-key"
TEXT, INT4 = 25, 23
TABLE_OID = 16400
RULES = (
    MaskingRule("secrets", "full", columns=("*password*", "api_key", "*.token")),
    MaskingRule("pii", "partial", detectors=("email", "credit_card", "ssn", "jwt", "aws_key", "private_key")),
    MaskingRule("customer-refs", "hash", columns=("customer_ref",)),
)
FOUR_COLUMNS = [
    Column("password_hash", TABLE_OID, 1, TEXT, 0),
    Column("api_key", TABLE_OID, 2, TEXT, 0),
    Column("note", TABLE_OID, 3, TEXT, 0),
    Column("comment", TABLE_OID, 4, TEXT, 0),
]
STREAM_COLUMNS = [Column("id", 0, 0, INT4, 0), *(c._replace(table_oid=0, attnum=0) for c in FOUR_COLUMNS)]
SCANNED_CANARIES = [CANARIES[name] for name in ("email", "credit_card", "ssn", "jwt", "aws_key")]


def _md5(n: int) -> bytes:
    return hashlib.md5(str(n).encode(), usedforsecurity=False).hexdigest().encode()


def data_row(values: Sequence[bytes | None]) -> bytes:
    """A DataRow payload (after its 5-byte header)."""
    out = [struct.pack("!h", len(values))]
    for value in values:
        out.append(struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value)
    return b"".join(out)


def clean_row(n: int) -> bytes:
    return data_row(
        [
            f"{n * 7919:032x}".encode(),
            f"key-{n:08d}-{n * 31:016x}".encode(),
            f"order {n} shipped to the warehouse on 2024-01-15, status ok".encode(),
            f"customer asked about invoice {n}, resolved by phone".encode(),
        ]
    )


def canary_row(n: int) -> bytes:
    canary = SCANNED_CANARIES[n % len(SCANNED_CANARIES)]
    other = SCANNED_CANARIES[(n + 1) % len(SCANNED_CANARIES)]
    return data_row(
        [
            f"{n * 7919:032x}".encode(),
            f"key-{n:08d}".encode(),
            f"order {n} for {canary} shipped".encode(),
            f"note: {other}".encode(),
        ]
    )


def stream_row(n: int) -> bytes:
    """A row of pg_bench's MASKED_STREAM_SQL, as PostgreSQL sends it in text format."""
    note = f"order {n} for bob{n}@example.com" if n % 100 == 0 else f"order {n} shipped"
    return data_row([str(n).encode(), _md5(n), _md5(n + 1), note.encode(), f"{'x' * 20}{n}".encode()])


def hundred_rows() -> list[bytes]:
    """100 rows: every 10th holds canaries in both scanned columns."""
    return [canary_row(n) if n % 10 == 0 else clean_row(n) for n in range(100)]


def _median(runs: int, once: Callable[[], float]) -> float:
    return statistics.median(once() for _ in range(runs))


def _seconds_per_call(items: list, call: Callable, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            call(item)
    return (time.perf_counter() - started) / (repeat * len(items))


def hundred_rows_ms(runs: int) -> tuple[float, float]:
    """Masking 100 rows in ms: with the plan cached, and from a fresh Masker."""
    rows = hundred_rows()
    cached = Masker(RULES, KEY, {TABLE_OID: ("public", "accounts")})

    def warm() -> float:
        plan = cached.for_columns(FOUR_COLUMNS)
        started = time.perf_counter()
        for _ in range(20):
            for row in rows:
                plan.mask_row(row)  # type: ignore[union-attr]
        return (time.perf_counter() - started) / 20 * 1e3

    def cold() -> float:
        started = time.perf_counter()
        plan = Masker(RULES, KEY, {TABLE_OID: ("public", "accounts")}).for_columns(FOUR_COLUMNS)
        for row in rows:
            plan.mask_row(row)  # type: ignore[union-attr]
        return (time.perf_counter() - started) * 1e3

    return _median(runs, warm), _median(runs, cold)


def per_row_us(runs: int) -> dict[str, float]:
    """Per-row masking cost in µs, by row kind, with a cached plan."""
    masker = Masker(RULES, KEY, {TABLE_OID: ("public", "accounts")})
    four, stream = masker.for_columns(FOUR_COLUMNS), masker.for_columns(STREAM_COLUMNS)
    kinds = {
        "clean": (four, [clean_row(n) for n in range(1, 1000)]),
        "canary": (four, [canary_row(n) for n in range(1000)]),
        "pg_bench stream": (stream, [stream_row(n) for n in range(1, 1001)]),
    }
    return {
        name: _median(runs, lambda plan=plan, rows=rows: _seconds_per_call(rows, plan.mask_row, 5) * 1e6)
        for name, (plan, rows) in kinds.items()
    }


def prefilter_us(runs: int) -> dict[str, float]:
    """The detector prefilter per value, and a full find on a canary, in µs."""
    detectors = DetectorSet(RULES[1].detectors)
    values = {
        "hex 94 B": [_md5(n) + _md5(n + 1) + b"x" * 30 for n in range(1000)],  # pg_bench's STREAM_SQL rows
        "prose 60 B": [f"order {n} shipped to the warehouse on 2024-01-15, status ok".encode() for n in range(1000)],
        "name 12 B": [f"Alice Smith{n % 10}".encode() for n in range(1000)],
    }
    figures = {
        f"prefilter {name}": _median(runs, lambda v=v: _seconds_per_call(v, detectors.features, 5) * 1e6)
        for name, v in values.items()
    }
    canaries = [f"order {n} for {SCANNED_CANARIES[n % 5]} shipped" for n in range(500)]
    figures["find, canary value"] = _median(runs, lambda: _seconds_per_call(canaries, detectors.find, 2) * 1e6)
    return figures


def measure(runs: int = DEFAULT_RUNS) -> list[str]:
    """Report lines: masking 100 rows in ms, per-row and per-value costs in µs."""
    warm, cold = hundred_rows_ms(runs)
    rows = per_row_us(runs)
    values = prefilter_us(runs)
    return [
        f"masking cost, median of {runs} runs:",
        f"  100 rows (2 columns masked, 2 scanned, 10 rows with canaries): {warm:.3f} ms; "
        f"first result set of a session (plan built): {cold:.3f} ms",
        "  per row (us): " + "  ".join(f"{name} {value:.2f}" for name, value in rows.items()),
        f"  masker's share of 1,000,000 pg_bench stream rows: {rows['pg_bench stream']:.1f} s",
        "  per value (us): " + "  ".join(f"{name} {value:.2f}" for name, value in values.items()),
    ]


def main() -> None:
    """Print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"runs per figure (default {DEFAULT_RUNS})")
    options = parser.parse_args()
    sys.stdout.write("\n".join(measure(options.runs)) + "\n")


if __name__ == "__main__":
    main()
