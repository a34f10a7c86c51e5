"""SSH benchmark: Gatehouse against direct OpenSSH, measured in one run.

Starts a throwaway sshd (tests/support/sshd.py) and a gateway node with its
defaults (tests/support/gateway_process.py: recording on, terminal data
capped at 100 MiB per session; no command policy, no masking), registers the
sshd as an SSH connection, then measures OpenSSH's `ssh` straight to the sshd
with the upstream key ("direct") and through the gateway ("gatehouse"), side
by side on loopback:

1. concurrent exec sessions: 100 `ssh HOST 'echo $((1+1)); sleep 1'` started
   at once, twice per target, alternating; all must exit 0 and print 2. Wall
   time, and the gateway's peak RSS (VmHWM), read before anything larger has
   run through it;
2. interactive echo latency: `ssh -tt` on a local pty, the remote side a
   raw-mode echo program; single bytes, each sent after the previous echo,
   alternating between the two sessions. p50 and p99, and what the gateway adds;
3. bulk: `ssh HOST 'head -c 500M /dev/zero' > /dev/null`, rounds alternating
   direct and gatehouse. Medians, MB/s, the ratio gatehouse/direct, the
   gateway's CPU time and RSS growth, and what each run's recording holds.

Run with `make bench-ssh` or
`python bench/ssh_bench.py [--bulk-mb N] [--rounds N] [--echo-count N] [--concurrent N] [--quick]`.
"""

import argparse
import fcntl
import importlib.metadata
import os
import re
import select
import shlex
import statistics
import struct
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: the repo's packages are not on the path otherwise

from pg_bench import (  # noqa: E402 (bench/ is the script's own folder)
    BenchError,
    RssSampler,
    bench_gateway,
    cpu_ticks,
    gateway_problems,
    load_average,
    machine_lines,
    run_and_report,
    steal_line,
    tool_version,
    tree_cpu_seconds,
)

from tests.protocols.nodes import poll, recording_path, session_rows  # noqa: E402
from tests.protocols.ssh_nodes import SshAccess, last_session_id, provision_ssh  # noqa: E402
from tests.support.gateway_process import GatewayProcess  # noqa: E402
from tests.support.sshd import SshServer, running_sshd  # noqa: E402

TARGETS = ("direct", "gatehouse")
MB = 1_000_000  # throughput is in MB/s of 10^6 bytes; sizes given with --bulk-mb are MiB, as `head -c 500M` reads them
MIB = 1 << 20
CHECK_MIB = 8  # the untimed first transfer of each target, whose bytes are counted
CONCURRENT_COMMAND = "echo $((1+1)); sleep 1"
CONCURRENT_OUTPUT = b"2\n"
ECHO_WARMUP = 50  # untimed keystrokes per session before the measured ones
ECHO_KEYS = b"abcdefghijklmnopqrstuvwxyz"  # no '~' (OpenSSH's escape) and nothing a terminal would act on
READY = b"READY"
# The remote side of the echo sessions: its pty in raw mode, each byte written back as it comes, until TOTAL bytes.
ECHO_PROGRAM = """\
import os, tty
tty.setraw(0)
os.write(1, b"READY")
left = {total}
while left > 0:
    data = os.read(0, 1024)
    if not data:
        break
    os.write(1, data)
    left -= len(data)
"""
ECHO_TIMEOUT = 10.0  # seconds for one echo, or for the session to say READY
SESSION_TIMEOUT = 60.0  # seconds for a session's recording to be sealed
CLIENT_OPTIONS = ("-o", "ConnectTimeout=20")
RECORD_CAP = 100 * MIB  # the node's default GATEHOUSE_SSH_RECORD_MAX_BYTES: terminal data recorded per session


class Setup:
    """The sshd, the gateway node and how each target's `ssh` command line is built."""

    def __init__(self, sshd: SshServer, gateway: GatewayProcess, access: SshAccess) -> None:
        self.sshd = sshd
        self.gateway = gateway
        self.access = access

    def ssh(self, target: str, *args: str, options: tuple[str, ...] = ()) -> list[str]:
        """`ssh [options] DEST ARGS` for TARGET: straight to the sshd, or through the gateway."""
        options = (*options, *CLIENT_OPTIONS)
        if target == "direct":
            return ["ssh", "-F", "/dev/null", *options, *self.sshd.client_options(), *args]
        return self.access.ssh(*args, options=options)

    @property
    def gateway_pid(self) -> int:
        return self.gateway.process.pid


@contextmanager
def benchmark_setup(log: Callable[[str], None]) -> Iterator[Setup]:
    """An sshd, a gateway node with the sshd as connection `bench` for agent `bench-bot`; all stopped on the way out."""
    with ExitStack() as stack:
        log("starting sshd ...")
        sshd = stack.enter_context(running_sshd())
        log("starting the gateway ...")
        gateway, gateway_dir = bench_gateway(stack, "gatehouse-bench-ssh-")
        gateway.start()  # makes the node's SSH host key, which provisioning pins for the clients
        access = provision_ssh(gateway, sshd, gateway_dir, connection="bench", agent="bench-bot")
        yield Setup(sshd, gateway, access)


# --- the gateway's side: its memory and its recordings -------------------------------------


def proc_status_kb(pid: int, name: str) -> int:
    """A `/proc/PID/status` figure in kB (VmRSS, VmHWM, ...)."""
    match = re.search(rf"^{name}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    if match is None:
        raise BenchError(f"/proc/{pid}/status has no {name}")
    return int(match.group(1))


def sealed_sessions(gateway: GatewayProcess, after: int, count: int) -> list[dict]:
    """The `count` sessions opened after session id `after`, once every one is sealed."""

    def ready() -> list[dict] | None:
        rows = [row for row in session_rows(gateway) if row["id"] > after]
        done = len(rows) >= count and all(row["status"] != "live" and row["seal"] for row in rows)
        return rows if done else None

    rows = poll(ready, SESSION_TIMEOUT, interval=0.2)
    if rows is None:
        found = [row for row in session_rows(gateway) if row["id"] > after]
        sealed = sum(1 for row in found if row["seal"])
        raise BenchError(f"expected {count} sealed sessions, found {len(found)} ({sealed} sealed)")
    return rows


@dataclass
class RecordedRun:
    """What the gateway recorded of one bulk session."""

    bytes_to_client: int
    file_bytes: int
    truncated: bool


def recorded_run(gateway: GatewayProcess, after: int) -> RecordedRun:
    """The one session opened after `after`: its byte counter, its recording's size and whether it hit the cap."""
    (row,) = sealed_sessions(gateway, after, 1)
    path = recording_path(gateway, row)
    size = path.stat().st_size
    # Terminal data stops at the cap, so the `truncated` event sits among the last few lines.
    with path.open("rb") as recording:
        recording.seek(max(size - 65536, 0))
        truncated = b'"truncated"' in recording.read()
    return RecordedRun(row["bytes_to_client"], size, truncated)


# --- the first, untimed transfer: bytes counted, cipher noted --------------------------------


def check_target(setup: Setup, target: str) -> str:
    """Fetch CHECK_MIB MiB through TARGET, counting the bytes; returns the key exchange and cipher negotiated."""
    command = setup.ssh(target, f"head -c {CHECK_MIB}M /dev/zero", options=("-v",))
    result = subprocess.run(command, capture_output=True, timeout=120)
    if result.returncode != 0 or len(result.stdout) != CHECK_MIB * MIB:
        errors = result.stderr.decode(errors="replace").splitlines()
        problem = [line for line in errors if not line.startswith("debug")][-5:]
        raise BenchError(
            f"{target}: `head -c {CHECK_MIB}M` exited {result.returncode} with {len(result.stdout)} bytes: {problem}"
        )
    kex = re.search(rb"kex: algorithm: (\S+)", result.stderr)
    negotiated = re.search(rb"kex: server->client cipher: (\S+) MAC: (\S+)", result.stderr)
    if kex is None or negotiated is None:
        return "unknown"
    cipher, mac = (part.decode() for part in negotiated.groups())
    return f"{kex.group(1).decode()}, {cipher}" + ("" if mac == "<implicit>" else f" {mac}")


# --- concurrent execs ------------------------------------------------------------------------


@dataclass
class ConcurrentRun:
    """COUNT execs started at once: the wall time, how many printed the right answer, the first failure."""

    seconds: float
    succeeded: int
    total: int
    first_failure: str = ""
    sessions_sealed: int | None = None  # through the gateway: the sessions it recorded and sealed


@dataclass
class ConcurrentResults:
    """Every concurrent run by target, and the gateway's RSS before its first run and its VmHWM after its last."""

    runs: dict[str, list[ConcurrentRun]]
    rss_before_kb: int
    rss_peak_kb: int


def run_concurrent(commands: list[list[str]]) -> ConcurrentRun:
    """Start every command at once and wait for all; each must exit 0 and print CONCURRENT_OUTPUT."""
    started = time.monotonic()
    processes = [
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for command in commands
    ]
    try:
        outputs = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:  # only after a timeout or ^C: none is left behind
                process.kill()
                process.wait()
    elapsed = time.monotonic() - started
    outcomes = [(process.returncode, out, err) for process, (out, err) in zip(processes, outputs, strict=True)]
    failures = [(code, out, err) for code, out, err in outcomes if code != 0 or out != CONCURRENT_OUTPUT]
    first = ""
    if failures:
        code, out, err = failures[0]
        first = f"exit {code}, stdout {out[:80]!r}, stderr {err.decode(errors='replace').strip()[-300:]!r}"
    return ConcurrentRun(elapsed, len(commands) - len(failures), len(commands), first)


def measure_concurrent(setup: Setup, count: int, rounds: int, log: Callable[[str], None]) -> ConcurrentResults:
    """COUNT concurrent execs per target, ROUNDS times alternating; the gateway's memory around its runs."""
    runs: dict[str, list[ConcurrentRun]] = {target: [] for target in TARGETS}
    rss_before_kb = proc_status_kb(setup.gateway_pid, "VmRSS")
    for number in range(1, rounds + 1):
        for target in TARGETS:
            after = last_session_id(setup.gateway)
            run = run_concurrent([setup.ssh(target, CONCURRENT_COMMAND) for _ in range(count)])
            if target != "direct":
                run.sessions_sealed = len(sealed_sessions(setup.gateway, after, count))
            runs[target].append(run)
            log(
                f"round {number}: {count} concurrent execs {target:<10} {run.succeeded}/{run.total} ok"
                f" in {run.seconds:.2f} s"
            )
    return ConcurrentResults(runs, rss_before_kb, proc_status_kb(setup.gateway_pid, "VmHWM"))


# --- interactive echo ------------------------------------------------------------------------


class EchoSession:
    """One `ssh -tt` on a local pty, the remote side echoing each byte in raw mode; times one keystroke's echo."""

    def __init__(self, command: list[str]) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)  # ssh makes it raw too, once it runs; until then nothing is echoed locally either
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.process = subprocess.Popen(
            command, stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True
        )
        os.close(slave)
        self._read_until(READY)

    def _read(self) -> bytes:
        ready, _, _ = select.select([self.master], [], [], ECHO_TIMEOUT)
        if not ready:
            raise BenchError(
                f"no echo within {ECHO_TIMEOUT} s (ssh {'running' if self.process.poll() is None else 'exited'})"
            )
        try:
            return os.read(self.master, 4096)
        except OSError as error:  # EIO: ssh exited and closed the pty
            raise BenchError(f"the echo session ended: {error}") from error

    def _read_until(self, marker: bytes) -> None:
        seen = b""
        while marker not in seen:
            seen += self._read()
            if len(seen) > 65536:
                raise BenchError(f"the echo session did not start: {seen[-300:]!r}")

    def round_trip(self, key: bytes) -> float:
        """Send one byte, wait for its echo; microseconds between the two."""
        started = time.perf_counter_ns()
        os.write(self.master, key)
        echoed = self._read()
        elapsed = (time.perf_counter_ns() - started) / 1000
        if echoed != key:
            raise BenchError(f"sent {key!r}, got {echoed!r} back")
        return elapsed

    def close(self) -> None:
        """Wait for ssh to end (the remote program stops after its last byte), then free the pty."""
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def measure_echo(setup: Setup, count: int, log: Callable[[str], None]) -> dict[str, list[float]]:
    """COUNT timed keystrokes per target after ECHO_WARMUP untimed ones, alternating between the two sessions."""
    remote = f"python3 -c {shlex.quote(ECHO_PROGRAM.format(total=ECHO_WARMUP + count))}"
    samples: dict[str, list[float]] = {target: [] for target in TARGETS}
    with ExitStack() as stack:
        sessions = {}
        for target in TARGETS:
            sessions[target] = EchoSession(setup.ssh(target, remote, options=("-tt", "-q", "-e", "none")))
            stack.callback(sessions[target].close)
        for number in range(ECHO_WARMUP + count):
            key = ECHO_KEYS[number % len(ECHO_KEYS) : number % len(ECHO_KEYS) + 1]
            for target, session in sessions.items():
                elapsed = session.round_trip(key)
                if number >= ECHO_WARMUP:
                    samples[target].append(elapsed)
    for target, values in samples.items():
        log(f"echo {target:<10} p50 {percentile(values, 50):8.1f} us   p99 {percentile(values, 99):8.1f} us")
    return samples


def percentile(values: list[float], pct: int) -> float:
    """The pct-th percentile (exclusive method, as statistics.quantiles)."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[pct - 1]


# --- bulk ----------------------------------------------------------------------------------------


@dataclass
class BulkRun:
    """One bulk transfer: wall time; for the gateway, its CPU time, RSS growth and recording."""

    seconds: float
    gateway_cpu: float | None = None
    rss_growth_mb: float | None = None  # peak over the transfer and until its recording was sealed
    seal_lag: float | None = None  # seconds from the client's exit to the sealed recording
    recorded: RecordedRun | None = None


def bulk_command(setup: Setup, target: str, mib: int) -> Callable[[], float]:
    """A function that runs `ssh HOST 'head -c MIBM /dev/zero' > /dev/null` once and returns its wall time."""
    command = setup.ssh(target, f"head -c {mib}M /dev/zero")

    def run() -> float:
        started = time.monotonic()
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
        elapsed = time.monotonic() - started
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace")[-500:]
            raise BenchError(f"bulk {target} exited {result.returncode}: {stderr}")
        return elapsed

    return run


def run_bulk(setup: Setup, target: str, mib: int) -> BulkRun:
    """One timed bulk transfer; through the gateway, also its CPU, its memory until the seal, and the recording."""
    transfer = bulk_command(setup, target, mib)
    if target == "direct":
        return BulkRun(transfer())
    after = last_session_id(setup.gateway)
    cpu_before = tree_cpu_seconds(setup.gateway_pid)
    with RssSampler(setup.gateway_pid) as sampler:
        elapsed = transfer()
        cpu = tree_cpu_seconds(setup.gateway_pid) - cpu_before
        finished = time.monotonic()
        # Waiting for the seal keeps the recording's last flushes out of the next run, and in the RSS sample.
        recorded = recorded_run(setup.gateway, after)
        seal_lag = time.monotonic() - finished
    return BulkRun(elapsed, cpu, sampler.growth_mb, seal_lag, recorded)


def measure_bulk(setup: Setup, mib: int, rounds: int, log: Callable[[str], None]) -> dict[str, list[BulkRun]]:
    """ROUNDS bulk transfers per target, alternating direct and gatehouse."""
    runs: dict[str, list[BulkRun]] = {target: [] for target in TARGETS}
    for number in range(1, rounds + 1):
        for target in TARGETS:
            outcome = run_bulk(setup, target, mib)
            runs[target].append(outcome)
            rate = mib * MIB / MB / outcome.seconds
            cpu = f"  gateway CPU {outcome.gateway_cpu:.2f} s" if outcome.gateway_cpu is not None else ""
            log(f"round {number}: bulk {mib} MiB {target:<10} {outcome.seconds:6.2f} s  {rate:7.1f} MB/s{cpu}")
    return runs


# --- the report ------------------------------------------------------------------------------------


@dataclass
class Results:
    """Every measurement's runs, by target, and the key exchange and cipher each target's client negotiated."""

    ciphers: dict[str, str] = field(default_factory=dict)
    concurrent: ConcurrentResults | None = None
    echo: dict[str, list[float]] = field(default_factory=dict)
    bulk: dict[str, list[BulkRun]] = field(default_factory=dict)


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "n/a"


def report_concurrent(results: ConcurrentResults, count: int) -> list[str]:
    """Each target's runs (all must succeed), the ratio of medians, the sessions sealed and the gateway's RSS."""
    lines = [f"{count} concurrent exec sessions `ssh HOST '{CONCURRENT_COMMAND}'`, started at once (wall time)"]
    medians = {target: statistics.median(run.seconds for run in runs) for target, runs in results.runs.items()}
    for target, runs in results.runs.items():
        each = ", ".join(f"{run.seconds:.2f}" for run in runs)
        succeeded = ", ".join(f"{run.succeeded}/{run.total}" for run in runs)
        lines.append(
            f"  {target:<10} median {medians[target]:6.2f} s   runs [{each}]   exited 0 printing 2: {succeeded}"
        )
        lines += [f"    failure: {run.first_failure}" for run in runs if run.first_failure]
    lines.append(
        f"  wall time ratio gatehouse/direct {_ratio(medians['gatehouse'], medians['direct'])} (lower is better)"
    )
    sealed = ", ".join(str(run.sessions_sealed) for run in results.runs["gatehouse"])
    lines.append(f"  gateway sessions recorded and sealed, per run: {sealed}")
    before, peak = results.rss_before_kb / 1024, results.rss_peak_kb / 1024
    lines.append(
        f"  gateway RSS before {before:.1f} MB, peak (VmHWM) {peak:.1f} MB: +{peak - before:.1f} MB,"
        f" {(peak - before) * 1024 / count:.0f} kB per concurrent session"
    )
    return lines


def report_echo(samples: dict[str, list[float]]) -> list[str]:
    count = len(samples["direct"])
    lines = [
        f"interactive echo: `ssh -tt` on a pty, remote raw-mode echo; {count} keystrokes per target after"
        f" {ECHO_WARMUP} untimed, each after the previous echo, alternating targets (microseconds)"
    ]
    for target, values in samples.items():
        lines.append(
            f"  {target:<10} p50 {percentile(values, 50):8.1f}   p99 {percentile(values, 99):8.1f}"
            f"   min {min(values):8.1f}   max {max(values):9.1f}"
        )
    added = {pct: percentile(samples["gatehouse"], pct) - percentile(samples["direct"], pct) for pct in (50, 99)}
    lines.append(f"  added by gatehouse: p50 {added[50]:+.1f} us, p99 {added[99]:+.1f} us (aim: p50 under 1000 us)")
    return lines


def report_bulk(runs: dict[str, list[BulkRun]], mib: int) -> list[str]:
    size = mib * MIB
    lines = [f"bulk: `ssh HOST 'head -c {mib}M /dev/zero' > /dev/null` ({size:,} bytes), rounds alternating targets"]
    medians = {target: statistics.median(run.seconds for run in target_runs) for target, target_runs in runs.items()}
    for target, target_runs in runs.items():
        each = ", ".join(f"{run.seconds:.2f}" for run in target_runs)
        rate = size / MB / medians[target]
        lines.append(f"  {target:<10} median {medians[target]:6.2f} s  {rate:7.1f} MB/s   runs [{each}]")
    ratio = _ratio(medians["direct"], medians["gatehouse"])
    lines.append(f"  throughput ratio gatehouse/direct {ratio} (issue: at least 0.5, aim 0.7)")
    gateway = runs["gatehouse"]
    cpu = statistics.median(run.gateway_cpu for run in gateway)
    lines.append(
        f"  gateway CPU per run, user + system, median {cpu:.2f} s: {cpu / medians['gatehouse'] * 100:.0f} % of one"
        f" core over the run, {cpu / (size / 1e9):.2f} s per GB relayed"
    )
    growth = [run.rss_growth_mb for run in gateway]
    lag = statistics.median(run.seal_lag for run in gateway)
    lines.append(
        f"  gateway peak RSS growth, until the recording was sealed: median {statistics.median(growth):.1f} MB,"
        f" max {max(growth):.1f} MB; sealed a median {lag:.2f} s after the client finished"
    )
    lines += report_recordings([run.recorded for run in gateway], size)
    return lines


def report_recordings(recorded: list[RecordedRun], size: int) -> list[str]:
    """Each gateway run's session: its byte counter against the size, its recording's size, the cap."""
    counted = sorted({run.bytes_to_client for run in recorded})
    files = ", ".join(f"{run.file_bytes / MB:.0f}" for run in recorded)
    truncated = sum(run.truncated for run in recorded)
    verdict = "as sent" if counted == [size] else f"NOT {size:,}: {counted}"
    return [
        f"  recording: each session sealed; bytes_to_client {verdict}; recording files [{files}] MB;"
        f" {truncated}/{len(recorded)} marked truncated (the cap: {RECORD_CAP // MIB} MiB of terminal data)"
    ]


def report_problems(results: Results, gateway: GatewayProcess, bulk_size: int) -> list[str]:
    """Failed execs, miscounted bulk sessions and the gateway log's errors (one line saying none if none)."""
    lines = []
    for target, runs in results.concurrent.runs.items():
        failed = sum(run.total - run.succeeded for run in runs)
        if failed:
            lines.append(f"  concurrent execs {target}: {failed} failed")
    miscounted = [run.recorded.bytes_to_client for run in results.bulk["gatehouse"]]
    if any(count != bulk_size for count in miscounted):
        lines.append(f"  bulk gatehouse: bytes_to_client {miscounted}, expected {bulk_size:,} each")
    lines += gateway_problems(gateway)
    return ["problems:", *lines] if lines else ["problems: none (every client succeeded, no errors in the gateway log)"]


def setup_lines(options: argparse.Namespace, ciphers: dict[str, str]) -> list[str]:
    return [
        "setup: all on loopback on this machine, competing for its cores. direct: OpenSSH ssh -> sshd with the",
        "  upstream key. gatehouse: ssh -> the gateway (asyncssh; agent key login) -> the same sshd (upstream key);",
        f"  the gateway's defaults: recording on, terminal data recorded up to {RECORD_CAP // MIB} MiB per session"
        " (the rest marked",
        "  truncated), no command policy, no masking.",
        f"  the client's key exchange and cipher: direct {ciphers['direct']}; to the gateway {ciphers['gatehouse']}"
        f" (verified: {CHECK_MIB} MiB counted through each first, untimed)",
        f"  {options.concurrent} concurrent execs x {min(options.rounds, 2)} rounds per target;"
        f" echo {options.echo_count} keystrokes per target; bulk {options.bulk_mb} MiB x {options.rounds} rounds per"
        " target; targets alternate within each measurement",
    ]


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bulk-mb", type=int, help="MiB per bulk transfer (default 500; --quick 50)")
    parser.add_argument("--rounds", type=int, help="bulk transfers per target, alternating (default 5; --quick 1)")
    parser.add_argument("--echo-count", type=int, help="timed keystrokes per target (default 2000; --quick 200)")
    parser.add_argument("--concurrent", type=int, help="exec sessions started at once (default 100; --quick 20)")
    parser.add_argument("--quick", action="store_true", help="small sizes and one round, for a smoke test")
    options = parser.parse_args(argv)
    quick = options.quick
    options.bulk_mb = options.bulk_mb or (50 if quick else 500)
    options.rounds = options.rounds or (1 if quick else 5)
    options.echo_count = options.echo_count or (200 if quick else 2000)
    options.concurrent = options.concurrent or (20 if quick else 100)
    if min(options.bulk_mb, options.rounds, options.echo_count, options.concurrent) < 1:
        parser.error("--bulk-mb, --rounds, --echo-count and --concurrent must be at least 1")
    return options


def run_benchmark(options: argparse.Namespace, log: Callable[[str], None]) -> list[str]:
    """Set everything up, measure (concurrent execs first, so VmHWM is theirs), tear down; returns the report."""
    versions = [
        tool_version(["ssh", "-V"]),
        *(f"{name} {importlib.metadata.version(name)}" for name in ("asyncssh", "cryptography")),
    ]
    header = machine_lines(versions)
    print("\n".join(header), flush=True)
    results = Results()
    with benchmark_setup(log) as setup:
        ticks = cpu_ticks()
        results.ciphers = {target: check_target(setup, target) for target in TARGETS}
        results.concurrent = measure_concurrent(setup, options.concurrent, min(options.rounds, 2), log)
        results.echo = measure_echo(setup, options.echo_count, log)
        results.bulk = measure_bulk(setup, options.bulk_mb, options.rounds, log)
        peak_kb = proc_status_kb(setup.gateway_pid, "VmHWM")
        problems = report_problems(results, setup.gateway, options.bulk_mb * MIB)
        steal = steal_line(ticks)
    return [
        "",
        "=== Gatehouse SSH benchmark ===",
        *header,
        *setup_lines(options, results.ciphers),
        "",
        *report_concurrent(results.concurrent, options.concurrent),
        "",
        *report_echo(results.echo),
        "",
        *report_bulk(results.bulk, options.bulk_mb),
        "",
        f"gateway peak RSS over the whole run (VmHWM): {peak_kb / 1024:.1f} MB",
        *problems,
        steal,
        f"load average after the run: {load_average()}",
    ]


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    return run_and_report(lambda log: run_benchmark(options, log))


if __name__ == "__main__":
    sys.exit(main())
