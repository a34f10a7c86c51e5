"""Instructions per `pgbench -S` transaction in pgbouncer and in the gateway, counted by callgrind.

Throughput ratios (bench/pg_bench.py) move with the machine: a slower or
busier one gave 0.6 where another gave 0.75, for the same code. What a
proxy executes in user space per transaction does not: callgrind counts the
same instructions on any x86-64 machine for the same builds, however busy,
so a change to the relay can be judged in a few minutes anywhere. The
kernel's share is not counted; both proxies make the same system calls per
transaction (bench/README.md).

Each proxy runs under `valgrind --tool=callgrind`. For each target,
pgbench -S (8 clients) runs SHORT transactions and then SHORT + LONG,
with the proxy's counters zeroed before each; the difference between the
two counts over LONG is the figure, so connection setup and start-up
cancel out. What the proxy does idle (its timers) is counted after a
warm-up of every target and taken off each run in proportion to its
duration. Callgrind cannot see SHA-NI, so both proxies' TLS and the
recording's hashes count a little high.

Run with `make bench-pg-cost` or `python bench/pg_cost.py [--transactions N]`.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from pg_bench import (
    BOUNCER_USER,
    CLIENTS,
    PGBENCH_SELECT_ONLY,
    BenchError,
    Target,
    benchmark_setup,
    ensure_pgbouncer,
    machine_lines,
    run_and_report,
)

SHORT = 1_000
WARM_UP = 400
IDLE_SECONDS = 20
CALLGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
_THREAD_TOTAL = re.compile(r"^\s*Th\s+\d+\s+([\d,]+)", re.MULTILINE)


class Counter:
    """callgrind_control for one process under callgrind: `zero()` its counters, `read()` them."""

    def __init__(self, process: str, user: str | None = None) -> None:
        self.process = process  # a pid, or a program name callgrind_control matches
        self.as_user = ["runuser", "-u", user, "--"] if user else []

    def _control(self, option: str) -> str:
        command = [*self.as_user, "callgrind_control", option, self.process]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise BenchError(f"callgrind_control {option} {self.process} failed: {result.stderr.strip()}")
        return result.stdout

    def zero(self) -> None:
        self._control("-z")

    def read(self) -> int:
        """Instructions executed since the last zero, all threads."""
        totals = _THREAD_TOTAL.findall(self._control("-e"))
        if not totals:
            raise BenchError(f"callgrind_control found no callgrind run for {self.process}")
        return sum(int(total.replace(",", "")) for total in totals)


def pgbench(target: Target, transactions: int) -> None:
    command = [*PGBENCH_SELECT_ONLY, "-t", str(transactions // CLIENTS)]  # every count is a multiple of CLIENTS
    result = subprocess.run(command, capture_output=True, text=True, env=target.env(), timeout=3600)
    if result.returncode != 0:
        raise BenchError(f"pgbench against {target.name} failed: {result.stderr.strip()}")


def idle_rate(counter: Counter) -> float:
    """Instructions per second the proxy executes with no client: its timers (polls, flush ticks)."""
    counter.zero()
    time.sleep(IDLE_SECONDS)
    return counter.read() / IDLE_SECONDS


def instructions_per_transaction(target: Target, counter: Counter, long: int, idle: float) -> float:
    """(count of SHORT + LONG transactions - count of SHORT) / LONG, each less the timers' share.

    Under valgrind a transaction takes some fifty times longer, so the timers' fixed cost per
    second (a policy poll, the flusher's tick) would weigh fifty times more than in a real run.
    """
    counts = []
    for transactions in (SHORT, SHORT + long):
        counter.zero()
        started = time.monotonic()
        pgbench(target, transactions)
        counts.append(counter.read() - idle * (time.monotonic() - started))
    return (counts[1] - counts[0]) / long


def measure(options: argparse.Namespace, log: Callable[[str], None]) -> list[str]:
    with benchmark_setup(log, gateway_wrapper=CALLGRIND, bouncer_wrapper=CALLGRIND) as setup:
        gateway = Counter(str(setup.gateway.process.pid))
        bouncer = Counter("pgbouncer", BOUNCER_USER if os.geteuid() == 0 else None)
        targets = {name: setup.targets[name] for name in ("pgbouncer", "gatehouse", "gatehouse+policy")}
        for target in targets.values():
            pgbench(target, WARM_UP)
        log(f"counting what each proxy does idle, {IDLE_SECONDS} s each ...")
        idle = {counter: idle_rate(counter) for counter in (bouncer, gateway)}
        counts = {}
        for name, counter in (("pgbouncer", bouncer), ("gatehouse", gateway), ("gatehouse+policy", gateway)):
            log(f"counting {name} ...")
            counts[name] = instructions_per_transaction(targets[name], counter, options.transactions, idle[counter])
    lines = [f"user-space instructions per pgbench -S transaction (callgrind, {options.transactions:,} counted)"]
    for name, count in counts.items():
        ratio = "" if name == "pgbouncer" else f"   {count / counts['pgbouncer']:.1f}x pgbouncer's"
        lines.append(f"  {name:<17} {count:10,.0f}{ratio}")
    lines.append(
        "  idle, per second under callgrind (taken off each run for its duration):"
        f" pgbouncer {idle[bouncer] / 1e6:.2f}M, gatehouse {idle[gateway] / 1e6:.2f}M"
    )
    return ["", "=== Gatehouse PostgreSQL cost per transaction ===", *machine_lines(), "", *lines]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=4_000, help="transactions counted per target")
    options = parser.parse_args(argv)
    if options.transactions < CLIENTS or options.transactions % CLIENTS:
        parser.error(f"--transactions must be a multiple of the {CLIENTS} clients")

    def produce(log: Callable[[str], None]) -> list[str]:
        if shutil.which("valgrind") is None:
            raise BenchError("valgrind is not installed (apt-get install valgrind)")
        ensure_pgbouncer()
        return measure(options, log)

    return run_and_report(produce)


if __name__ == "__main__":
    sys.exit(main())
