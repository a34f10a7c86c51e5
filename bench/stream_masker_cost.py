"""Throughput of StreamMasker on 100 MB of terminal output: run on demand, never in the test suite.

    .venv/bin/python bench/stream_masker_cost.py [--megabytes N] [--chunk BYTES]
        [--detectors email,jwt,...]

Feeds ordinary text (`ls -l` and log lines, colourless and coloured), lower-case
prose the prefilter lets through untouched, and random bytes, in SSH-sized
chunks (32 KiB by default), through a masker with every detector (or those
named), and logs
MB/s for each next to a plain bytes copy of the same chunks.
"""

import argparse
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: the repo's packages are not on the path otherwise

from connections.policy.rules import DETECTORS, MaskingRule  # noqa: E402
from connections.protocols.ssh.stream_masker import StreamMasker  # noqa: E402

logger = logging.getLogger("stream_masker_throughput")

WORDS = ("alpha", "beta", "gamma", "delta", "server", "request", "handler", "user", "session", "cache", "miss")


def ls_and_logs(rnd: random.Random, size: int, colour: bool) -> bytes:
    """`ls -l` lines and application log lines, alternating, about `size` bytes."""
    lines, total = [], 0
    while total < size:
        if len(lines) % 2:
            name = f"{rnd.choice(WORDS)}_{rnd.randint(0, 999)}.log"
            if colour:
                name = f"\x1b[01;34m{name}\x1b[0m"
            line = (
                f"-rw-r--r-- 1 www-data www-data {rnd.randint(0, 10**7):>9} "
                f"Jan {rnd.randint(1, 28):2d} 12:{rnd.randint(0, 59):02d} {name}"
            )
        else:
            line = (
                f"2024-05-{rnd.randint(1, 28):02d} 12:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d},"
                f"{rnd.randint(0, 999):03d} INFO [worker-{rnd.randint(1, 8)}] GET /api/v1/{rnd.choice(WORDS)}/"
                f"{rnd.randint(1, 99999)} 200 {rnd.randint(1, 900)}ms"
            )
        lines.append(line)
        total += len(line) + 2
    return ("\r\n".join(lines) + "\r\n").encode()


def prose(rnd: random.Random, size: int) -> bytes:
    """Lower-case words and punctuation: text no detector's prefilter fires on."""
    words = []
    total = 0
    while total < size:
        word = rnd.choice(WORDS) + rnd.choice(("", "", "", ",", "."))
        words.append(word)
        total += len(word) + 1
    return (" ".join(words)).encode()


def measure(name: str, sample: bytes, megabytes: int, chunk: int, run: Callable[[list[bytes]], int]) -> None:
    chunks = [sample[i : i + chunk] for i in range(0, len(sample), chunk)]
    rounds = max(1, megabytes * 1_000_000 // len(sample))
    started = time.perf_counter()
    total = 0
    for _ in range(rounds):
        total += run(chunks)
    elapsed = time.perf_counter() - started
    logger.info("%-28s %8.1f MB/s  (%d MB in %.2f s)", name, total / elapsed / 1e6, total // 1_000_000, elapsed)


def masked(masker: StreamMasker) -> Callable[[list[bytes]], int]:
    def run(chunks: list[bytes]) -> int:
        total = 0
        for data in chunks:
            total += len(masker.feed(data))
        return total + len(masker.flush())

    return run


def copied(chunks: list[bytes]) -> int:
    return sum(len(bytes(bytearray(data))) for data in chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=32 * 1024)
    parser.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated; default: all")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rnd = random.Random(1)
    samples = {
        "ls -l and logs": ls_and_logs(rnd, 4_000_000, colour=False),
        "ls -l (coloured) and logs": ls_and_logs(rnd, 4_000_000, colour=True),
        "lower-case prose": prose(rnd, 4_000_000),
        "random bytes": os.urandom(4_000_000),
    }
    rules = [MaskingRule("pii", "full", detectors=tuple(args.detectors.split(",")))]
    logger.info("detectors: %s; %d-byte chunks", args.detectors, args.chunk)
    for name, sample in samples.items():
        measure(f"{name}: copy", sample, args.megabytes, args.chunk, copied)
        masker = StreamMasker(rules, b"throughput-key")
        measure(f"{name}: masked", sample, args.megabytes, args.chunk, masked(masker))


if __name__ == "__main__":
    main()
