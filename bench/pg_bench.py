"""PostgreSQL benchmark: Gatehouse against direct access and pgbouncer, measured in one run.

Starts a throwaway cluster, a gateway node (its defaults: recording on, pool
on) and pgbouncer in session mode, then runs each measurement several times,
interleaved across the targets, and prints the medians and their ratios:

- pgbench -S, 8 clients, 2 threads: TPS;
- pgbench -S -C (a new connection per transaction): TPS;
- a 1,000,000-row result streamed to psql: wall time, and the gateway's peak RSS growth;
- the same through a second Gatehouse connection guarded by a policy of 10
  guardrails and 3 masking rules ("gatehouse+policy"): pgbench -S, and a
  1,000,000-row result with 2 masked columns and 2 more scanned by detectors;
- the policy engine alone: per-statement guardrail cost and masking 100 rows.

Run with `make bench-pg` or `python bench/pg_bench.py [--seconds N] [--runs N] [--quick]`.
"""

import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: the repo's packages are not on the path otherwise

import masking_cost  # noqa: E402 (bench/ is the script's own folder)
import policy_cost  # noqa: E402

from connections.protocols.compiled import current_names  # noqa: E402
from tests.support.gateway_process import (  # noqa: E402
    WRAPPED_START_TIMEOUT,
    GatewayError,
    GatewayProcess,
    provision_bot,
)
from tests.support.pg_cluster import DATABASE, SUPERUSER, PgCluster, PgClusterError, running_cluster  # noqa: E402
from tests.support.ports import free_port, wait_for_port  # noqa: E402
from tests.support.watchdog import start_watchdog, stop_watchdog  # noqa: E402

HOST = "127.0.0.1"
CLIENTS = 8
THREADS = 2
SCALE = 10
# pgbench -S with the clients and threads of every measurement; callers add -T or -t.
PGBENCH_SELECT_ONLY = ["pgbench", "-n", "-S", "-c", str(CLIENTS), "-j", str(THREADS)]
STREAM_ROWS = 1_000_000
# About 100 bytes of text a row: g, then 64 hex digits and 30 filler characters.
STREAM_SQL = "SELECT g, md5(g::text) || md5((g + 1)::text) || repeat('x', 30) FROM generate_series(1, {rows}) g"
STREAM_SIZE_SQL = (
    "SELECT sum(octet_length(g::text) + octet_length(md5(g::text) || md5((g + 1)::text) || repeat('x', 30)))"
    " FROM generate_series(1, {rows}) g"
)
RSS_SAMPLE_SECONDS = 0.02
BOUNCER_USER = "postgres"  # pgbouncer refuses to run as root
TARGETS = ("direct", "pgbouncer", "gatehouse", "gatehouse+policy")
GUARDED_CONNECTION = "bench-guarded"
# 10 guardrails and 3 masking rules, on the connection behind "gatehouse+policy".
GUARD_POLICY = """\
policies:
  - name: bench-guard
    connections: [bench-guarded]
    default: allow
    unparseable: deny
    guardrails:
      - {name: no-drop, match: {kind: [DROP, TRUNCATE]}, action: deny}
      - {name: no-unbounded-write, match: {kind: [DELETE, UPDATE], without_where: true}, action: deny}
      - {name: no-file-access, match: {dangerous_functions: true, copy_program: true, copy_file: true}, action: deny}
      - {name: schema-changes, match: {kind: [ALTER, CREATE]}, action: review}
      - {name: no-grants, match: {kind: [GRANT, REVOKE]}, action: deny}
      - {name: no-roles, match: {kind: [CREATE ROLE, ALTER ROLE, DROP ROLE]}, action: deny}
      - {name: billing-by-review, match: {kind: [INSERT, UPDATE, DELETE, MERGE], schemas: [billing]}, action: review}
      - name: no-identity-change
        match: {kind: [SET, RESET], regex: '(?i)session_authorization|\\brole\\b'}
        action: deny
      - {name: no-dblink, match: {functions: ["dblink*"]}, action: deny}
      - {name: no-vacuum-full, match: {kind: [VACUUM], regex: '(?i)\\bfull\\b'}, action: review}
    masking:
      - {name: secrets, columns: ["*password*", "api_key", "*.token"], style: full}
      - {name: pii, detectors: [email, credit_card, ssn, jwt, aws_key, private_key], style: partial}
      - {name: customer-refs, columns: [customer_ref], style: hash}
"""
# 2 columns the "secrets" rule masks, 2 text columns the detectors scan (1 row in 100 holds an email).
MASKED_STREAM_SQL = (
    "SELECT g AS id, md5(g::text) AS password_hash, md5((g + 1)::text) AS api_key,"
    " 'order ' || g || CASE WHEN g % 100 = 0 THEN ' for bob' || g || '@example.com' ELSE ' shipped' END AS note,"
    " repeat('x', 20) || g AS comment FROM generate_series(1, {rows}) g"
)


class BenchError(RuntimeError):
    """A part of the benchmark could not be set up or a client failed."""


# --- the machine ------------------------------------------------------------------


def machine_lines(versions: list[str] | None = None) -> list[str]:
    """nproc, CPU model, memory and tool versions (pgbench and pgbouncer unless given), for the top of the report."""
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    if versions is None:
        versions = [tool_version(["pgbench", "--version"]), tool_version(["pgbouncer", "--version"])]
    return [
        f"machine: nproc={len(os.sched_getaffinity(0))}, cpu={cpu_model}, memory={mem_kb / 1024 / 1024:.1f} GiB",
        f"software: {interpreter()}, {', '.join(versions)}",
        f"compiled modules: {', '.join(current_names()) or 'none'}",
        f"load average before the run: {load_average()} (other work on the machine skews every figure)",
    ]


def interpreter() -> str:
    """Python's version and executable, and whether libpython is a shared library.

    Most of the gateway's hot path is Python, so the interpreter's build shows in every ratio: a
    build with a shared libpython and no PGO (pyenv's default) runs it about 20% slower than an
    optimized one such as Debian's /usr/bin/python3.11 (see the README).
    """
    maps = Path("/proc/self/maps").read_text()
    libpython = "shared libpython" if "libpython" in maps else "libpython in the executable"
    return f"Python {platform.python_version()} ({sys.executable} -> {os.path.realpath(sys.executable)}, {libpython})"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) CPU ticks of the whole machine so far, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])  # user nice system idle iowait irq softirq steal


def steal_line(before: tuple[int, int]) -> str:
    """The share of CPU time the hypervisor gave to other guests since `before` (a cpu_ticks())."""
    steal, total = (now - then for now, then in zip(cpu_ticks(), before, strict=True))
    share = 100 * steal / total if total else 0.0
    return f"CPU steal during the measurements: {share:.1f}% (above a few per cent, figures are not comparable)"


def tool_version(command: list[str]) -> str:
    """The first line a `--version` command prints, or "<name>: unknown"."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else f"{Path(command[0]).name}: unknown"


def ensure_pgbouncer() -> None:
    """Install the Debian pgbouncer package if the binary is missing."""
    if shutil.which("pgbouncer"):
        return
    if os.geteuid() != 0:
        raise BenchError("pgbouncer is not installed; run `apt-get install -y pgbouncer` (needs root)")
    print("installing pgbouncer with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "pgbouncer"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise BenchError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    # The package starts a system service on its default port; this benchmark runs its own.
    subprocess.run(["service", "pgbouncer", "stop"], capture_output=True, check=False)


# --- pgbouncer -------------------------------------------------------------------------


class PgBouncer:
    """pgbouncer in session mode in front of the cluster: SCRAM and TLS for clients, plain to the server."""

    def __init__(self, cluster: PgCluster, cert_file: Path, key_file: Path, wrapper: Sequence[str] = ()) -> None:
        self.cluster = cluster
        self.wrapper = list(wrapper)  # a command pgbouncer runs under (bench/pg_cost.py: valgrind)
        self.port = free_port(HOST)
        self.dir = Path(tempfile.mkdtemp(prefix="gatehouse-bench-pgbouncer-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._write_files(cert_file, key_file)

    @property
    def log_file(self) -> Path:
        return self.dir / "pgbouncer.log"

    def _write_files(self, cert_file: Path, key_file: Path) -> None:
        shutil.copyfile(cert_file, self.dir / "client.crt")
        shutil.copyfile(key_file, self.dir / "client.key")
        # A plain password in auth_file lets pgbouncer do SCRAM with the client and with the server.
        (self.dir / "userlist.txt").write_text(f'"{SUPERUSER}" "{self.cluster.superuser_password}"\n')
        (self.dir / "pgbouncer.ini").write_text(self._config())
        owner = _server_owner()
        for path in (self.dir, *self.dir.iterdir()):
            if path != self.dir:
                path.chmod(0o600)
            if owner is not None:
                os.chown(path, *owner)

    def _config(self) -> str:
        return f"""\
[databases]
{DATABASE} = host={HOST} port={self.cluster.port} dbname={DATABASE}

[pgbouncer]
listen_addr = {HOST}
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.dir / "userlist.txt"}
pool_mode = session
default_pool_size = 20
max_client_conn = 200
client_tls_sslmode = require
client_tls_cert_file = {self.dir / "client.crt"}
client_tls_key_file = {self.dir / "client.key"}
server_tls_sslmode = disable
logfile = {self.log_file}
pidfile =
ignore_startup_parameters = extra_float_digits
"""

    def start(self) -> None:
        """Run pgbouncer in the foreground of its own session and wait for its port."""
        command = [*self.wrapper, "pgbouncer", str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            command = ["runuser", "-u", BOUNCER_USER, "--", *command]
        with open(self.dir / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
            )
        self._watchdog = start_watchdog('kill -TERM -- "-$1" 2>/dev/null', str(self.process.pid))
        seconds = WRAPPED_START_TIMEOUT if self.wrapper else 15
        if not wait_for_port(HOST, self.port, seconds, still_starting=lambda: self.process.poll() is None):
            raise BenchError(f"pgbouncer did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop pgbouncer (its whole process group: runuser and pgbouncer) and delete its files."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        stop_watchdog(self._watchdog)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        text = "".join(p.read_text(errors="replace") for p in (self.log_file, self.dir / "stderr.log") if p.exists())
        return "\n".join(text.splitlines()[-lines:])


def _server_owner() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    import pwd

    entry = pwd.getpwnam(BOUNCER_USER)
    return entry.pw_uid, entry.pw_gid


# --- clients ---------------------------------------------------------------------------


@dataclass
class Target:
    """Where a client connects: libpq settings passed as PG* variables (never on the command line)."""

    name: str
    port: int
    dbname: str
    user: str
    password: str

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env.update(
            PGHOST=HOST,
            PGPORT=str(self.port),
            PGDATABASE=self.dbname,
            PGUSER=self.user,
            PGPASSWORD=self.password,
            PGSSLMODE="require",
            PGCONNECT_TIMEOUT="10",
        )
        return env


@dataclass
class PgbenchRun:
    """One pgbench run's throughput and failures, and the proxy's CPU time per transaction if measured."""

    tps: float
    processed: int
    failed: int
    errors: list[str] = field(default_factory=list)
    proxy_cpu_us: float | None = None


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, added = {pid}, True
    while added:
        children = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= children
        added = bool(children)
    return sum(times.get(member, 0.0) for member in tree)


def pgbench_with_cpu(target: "Target", seconds: int, new_connection_each: bool, proxy_pid: int | None) -> PgbenchRun:
    """run_pgbench, with the CPU time the proxy (and its children) spent per transaction."""
    before = tree_cpu_seconds(proxy_pid) if proxy_pid else 0.0
    outcome = run_pgbench(target, seconds, new_connection_each)
    if proxy_pid and outcome.processed:
        outcome.proxy_cpu_us = (tree_cpu_seconds(proxy_pid) - before) / outcome.processed * 1e6
    return outcome


def pgbench_command(seconds: int, new_connection_each: bool = False) -> list[str]:
    """pgbench -S with 8 clients and 2 threads for SECONDS (-C: a new connection per transaction)."""
    command = [*PGBENCH_SELECT_ONLY, "-T", str(seconds)]
    return [*command, "-C"] if new_connection_each else command


def run_pgbench(target: Target, seconds: int, new_connection_each: bool) -> PgbenchRun:
    """pgbench -S with 8 clients and 2 threads for SECONDS against TARGET."""
    command = pgbench_command(seconds, new_connection_each)
    result = subprocess.run(command, capture_output=True, text=True, env=target.env(), timeout=seconds + 120)
    return pgbench_outcome(target.name, result.stdout, result.stderr, result.returncode)


def pgbench_outcome(name: str, stdout: str, stderr: str, returncode: int) -> PgbenchRun:
    """A finished pgbench's TPS, transactions processed, failures and error lines."""
    tps = re.search(r"^tps = ([\d.]+)", stdout, re.M)
    processed = re.search(r"transactions actually processed: (\d+)", stdout)
    failed = re.search(r"number of failed transactions: (\d+)", stdout)
    errors = [line for line in stderr.splitlines() if line.strip()]
    if returncode != 0 and not errors:
        errors = [f"pgbench exited {returncode}"]
    if tps is None:
        raise BenchError(f"pgbench against {name} printed no tps:\n{stdout}\n{stderr}")
    return PgbenchRun(
        tps=float(tps.group(1)),
        processed=int(processed.group(1)) if processed else 0,
        failed=int(failed.group(1)) if failed else 0,
        errors=errors,
    )


def psql(target: Target, sql_text: str, output: str | None = None, timeout: float = 600) -> str:
    """Run psql -c SQL (unaligned, tuples only); its output goes to OUTPUT if given."""
    command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql_text]
    if output:
        command += ["-o", output]
    result = subprocess.run(command, capture_output=True, text=True, env=target.env(), timeout=timeout)
    if result.returncode != 0:
        raise BenchError(f"psql against {target.name} failed: {result.stderr.strip()}")
    return result.stdout


class RssSampler:
    """Samples a process's VmRSS every 20 ms in a thread; `growth_mb` is the peak minus the first sample."""

    def __init__(self, pid: int) -> None:
        self.status_file = Path(f"/proc/{pid}/status")
        self.baseline_kb = self._read_kb()
        self.peak_kb = self.baseline_kb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read_kb(self) -> int:
        match = re.search(r"VmRSS:\s+(\d+)", self.status_file.read_text())
        return int(match.group(1)) if match else 0

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_SECONDS):
            try:
                self.peak_kb = max(self.peak_kb, self._read_kb())
            except OSError:
                return  # the process is gone; the report shows the gateway's exit instead

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.baseline_kb) / 1024

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self._read_kb())


@dataclass
class StreamRun:
    """One streamed result: psql's wall time and, for the gateway, its RSS growth."""

    seconds: float
    rss_growth_mb: float | None = None


def stream_result(target: Target, sql_text: str, gateway_pid: int | None) -> StreamRun:
    """Stream SQL_TEXT's rows to psql (output to /dev/null) and time it; sample the gateway's RSS if given."""
    with ExitStack() as stack:
        sampler = stack.enter_context(RssSampler(gateway_pid)) if gateway_pid else None
        started = time.monotonic()
        psql(target, sql_text, output="/dev/null")
        elapsed = time.monotonic() - started
    return StreamRun(elapsed, sampler.growth_mb if sampler else None)


# --- the setup --------------------------------------------------------------------------


@dataclass
class Setup:
    """The running parts and the three ways to reach the same database."""

    cluster: PgCluster
    gateway: GatewayProcess
    targets: dict[str, Target]
    proxy_pids: dict[str, int]  # target name -> the process serving it, for CPU per transaction


def pgbench_cluster(stack: ExitStack, log: Callable[[str], None]) -> tuple[PgCluster, Target]:
    """A throwaway cluster with pgbench's tables (stopped by `stack`), and the direct target to it."""
    log(f"starting a PostgreSQL cluster, pgbench -i -s {SCALE} ...")
    cluster = stack.enter_context(running_cluster(max_connections=200))
    direct = Target("direct", cluster.port, DATABASE, SUPERUSER, cluster.superuser_password)
    init = subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(SCALE)], capture_output=True, text=True, env=direct.env(), timeout=600
    )
    if init.returncode != 0:
        raise BenchError(f"pgbench -i failed: {init.stderr.strip()}")
    return cluster, direct


def bench_gateway(stack: ExitStack, prefix: str, wrapper: Sequence[str] = ()) -> tuple[GatewayProcess, Path]:
    """A gateway node in a throwaway data dir (both removed by `stack`), not started yet; and that dir."""
    gateway_dir = Path(tempfile.mkdtemp(prefix=prefix))
    stack.callback(shutil.rmtree, gateway_dir, ignore_errors=True)
    return stack.enter_context(GatewayProcess(gateway_dir, wrapper=wrapper)), gateway_dir


@contextmanager
def benchmark_setup(
    log: Callable[[str], None], gateway_wrapper: Sequence[str] = (), bouncer_wrapper: Sequence[str] = ()
) -> Iterator[Setup]:
    """Cluster with pgbench tables, gateway node and pgbouncer; every process stopped on the way out.

    A wrapper is a command the gateway or pgbouncer then runs under (bench/pg_cost.py: valgrind).
    """
    with ExitStack() as stack:
        cluster, direct = pgbench_cluster(stack, log)
        log("starting the gateway ...")
        gateway, gateway_dir = bench_gateway(stack, "gatehouse-bench-gateway-", gateway_wrapper)
        provision_bot(gateway, cluster, connection="bench", agent="bench-bot", tls="disable")
        guard_connection(gateway, cluster, gateway_dir / "bench-policy.yaml")
        gateway.start()
        log("starting pgbouncer ...")
        bouncer = PgBouncer(cluster, gateway.cert_file, gateway.cert_file.with_suffix(".key"), bouncer_wrapper)
        stack.callback(bouncer.stop)
        bouncer.start()
        pgbouncer = Target("pgbouncer", bouncer.port, DATABASE, SUPERUSER, cluster.superuser_password)
        gatehouse = Target("gatehouse", gateway.pg_port, "bench", "bench-bot", gateway.token or "")
        guarded = Target("gatehouse+policy", gateway.pg_port, GUARDED_CONNECTION, "bench-bot", gateway.token or "")
        targets = {"direct": direct, "pgbouncer": pgbouncer, "gatehouse": gatehouse, "gatehouse+policy": guarded}
        gateway_pid = gateway.process.pid
        proxy_pids = {"pgbouncer": bouncer.process.pid, "gatehouse": gateway_pid, "gatehouse+policy": gateway_pid}
        yield Setup(cluster, gateway, targets, proxy_pids)


def guard_connection(gateway: GatewayProcess, cluster: PgCluster, policy_file: Path) -> None:
    """A second connection to the same database, for the same bot, under GUARD_POLICY."""
    gateway.manage(
        *("connections", "add", GUARDED_CONNECTION, "--kind", "postgres", "--host", cluster.host),
        *("--port", str(cluster.port), "--database", DATABASE, "--user", SUPERUSER),
        *("--password-env", "BENCH_UPSTREAM_PASSWORD", "--tls", "disable"),
        env={"BENCH_UPSTREAM_PASSWORD": cluster.superuser_password},
        check=True,
    )
    gateway.manage("agents", "grant", "bench-bot", GUARDED_CONNECTION, check=True)
    policy_file.write_text(GUARD_POLICY)
    gateway.manage("policies", "apply", str(policy_file), check=True)


# --- measurements and the report ----------------------------------------------------------------


CONNECT_TARGETS = ("direct", "pgbouncer", "gatehouse")
STREAM_TARGETS = ("direct", "pgbouncer", "gatehouse")
MASKED_STREAM_TARGETS = ("direct", "gatehouse", "gatehouse+policy")


def _by_target(names: tuple[str, ...]) -> Callable[[], dict[str, list]]:
    return lambda: {name: [] for name in names}


@dataclass
class Results:
    """Every run of every measurement, by measurement and target."""

    tps: dict[str, list[PgbenchRun]] = field(default_factory=_by_target(TARGETS))
    tps_connect: dict[str, list[PgbenchRun]] = field(default_factory=_by_target(CONNECT_TARGETS))
    stream: dict[str, list[StreamRun]] = field(default_factory=_by_target(STREAM_TARGETS))
    masked_stream: dict[str, list[StreamRun]] = field(default_factory=_by_target(MASKED_STREAM_TARGETS))


def measure(setup: Setup, options: argparse.Namespace, log: Callable[[str], None]) -> Results:
    """Warm up each target, then run every measurement RUNS times, interleaved across the targets."""
    results = Results()
    for target in setup.targets.values():
        run_pgbench(target, options.warmup, new_connection_each=False)
    for run in range(1, options.runs + 1):
        for name, runs in results.tps.items():
            proxy_pid = setup.proxy_pids.get(name)
            outcome = pgbench_with_cpu(setup.targets[name], options.seconds, False, proxy_pid)
            runs.append(outcome)
            log(f"run {run}: pgbench -S     {name:<16} {outcome.tps:10.1f} tps  failed={outcome.failed}")
    for run in range(1, options.runs + 1):
        for name, runs in results.tps_connect.items():
            outcome = run_pgbench(setup.targets[name], options.seconds, new_connection_each=True)
            runs.append(outcome)
            log(f"run {run}: pgbench -S -C  {name:<16} {outcome.tps:10.1f} tps  failed={outcome.failed}")
    streams = (("stream", STREAM_SQL, results.stream), ("masked stream", MASKED_STREAM_SQL, results.masked_stream))
    for label, sql_template, table in streams:
        for run in range(1, options.runs + 1):
            for name, runs in table.items():
                gateway_pid = setup.gateway.process.pid if name.startswith("gatehouse") else None
                outcome = stream_result(setup.targets[name], sql_template.format(rows=options.rows), gateway_pid)
                runs.append(outcome)
                rss = f"  gateway RSS +{outcome.rss_growth_mb:.1f} MB" if outcome.rss_growth_mb is not None else ""
                log(f"run {run}: {label} {options.rows} rows {name:<16} {outcome.seconds:7.2f} s{rss}")
    return results


def _median_tps(runs: list[PgbenchRun]) -> float:
    return statistics.median(r.tps for r in runs)


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "n/a"


def report_tps(title: str, runs: dict[str, list[PgbenchRun]]) -> list[str]:
    """One pgbench measurement: each target's runs, median, failures, and the ratios of medians."""
    lines = [title]
    medians = {name: _median_tps(r) for name, r in runs.items()}
    for name, target_runs in runs.items():
        each = ", ".join(f"{r.tps:.1f}" for r in target_runs)
        failed = sum(r.failed for r in target_runs)
        lines.append(f"  {name:<10} median {medians[name]:10.1f} tps   runs [{each}]   failed transactions {failed}")
    cpu = {name: [r.proxy_cpu_us for r in target_runs if r.proxy_cpu_us] for name, target_runs in runs.items()}
    measured = {name: statistics.median(values) for name, values in cpu.items() if values}
    if measured:
        each = "   ".join(f"{name} {value:.1f}" for name, value in measured.items())
        lines.append(f"  proxy CPU per transaction, user + system, median (us): {each}")
    for name in medians:
        if name.startswith("gatehouse"):
            lines.append(
                f"  ratios     {name}/pgbouncer {_ratio(medians[name], medians['pgbouncer'])}"
                f"   {name}/direct {_ratio(medians[name], medians['direct'])}"
            )
            # A run moves by several per cent on a shared machine: the spread says how far to trust the median.
            pairs = zip(runs[name], runs["pgbouncer"], strict=True)
            rounds = ", ".join(_ratio(run.tps, peer.tps) for run, peer in pairs)
            lines.append(f"             {name}/pgbouncer round by round [{rounds}]")
    lines.append(f"  ratios     pgbouncer/direct {_ratio(medians['pgbouncer'], medians['direct'])}")
    return lines


def report_stream(title: str, runs: dict[str, list[StreamRun]]) -> list[str]:
    """A streamed result: each target's wall times, the ratios to direct, and the gateway's RSS growth."""
    lines = [title]
    medians = {name: statistics.median(r.seconds for r in target_runs) for name, target_runs in runs.items()}
    for name, target_runs in runs.items():
        each = ", ".join(f"{r.seconds:.2f}" for r in target_runs)
        lines.append(f"  {name:<16} median {medians[name]:7.2f} s   runs [{each}]")
    ratios = [f"{name}/direct {_ratio(medians[name], medians['direct'])}" for name in medians if name != "direct"]
    lines.append(f"  ratios     {'   '.join(ratios)} (time; lower is better)")
    for name, target_runs in runs.items():
        growth = [r.rss_growth_mb for r in target_runs if r.rss_growth_mb is not None]
        if growth:
            each = ", ".join(f"{g:.1f}" for g in growth)
            lines.append(
                f"  gateway peak RSS growth ({name}): median {statistics.median(growth):.1f} MB,"
                f" max {max(growth):.1f} MB   runs [{each}]"
            )
    return lines


def report_errors(results: Results, gateway: GatewayProcess) -> list[str]:
    """Client errors and gateway log lines that point at a problem (empty if there are none)."""
    lines = []
    for label, table in (("pgbench -S", results.tps), ("pgbench -S -C", results.tps_connect)):
        for name, runs in table.items():
            errors = [e for r in runs for e in r.errors]
            if errors:
                lines.append(f"  {label} {name}: {len(errors)} error lines, first: {errors[0]}")
    lines += gateway_problems(gateway)
    return ["problems:", *lines] if lines else ["problems: none (no client errors, no errors in the gateway log)"]


def gateway_problems(gateway: GatewayProcess) -> list[str]:
    """Report lines for the gateway log's ERROR/Traceback lines and for its exit, if it is gone (empty if neither)."""
    lines = []
    log_problems = [
        line for line in gateway.log_text().splitlines() if re.search(r"ERROR|Traceback|Exception|CRITICAL", line)
    ]
    if log_problems:
        lines.append(f"  gateway log: {len(log_problems)} lines with ERROR/Traceback/Exception; first few:")
        lines += [f"    {line}" for line in log_problems[:10]]
    if not gateway.running:
        lines.append(f"  the gateway process exited with {gateway.process.returncode}")
    return lines


def policy_engine_lines() -> list[str]:
    """The policy engine alone, in this process: the guardrails per statement and masking 100 rows."""
    return ["policy engine alone (this process, no network)", *policy_cost.measure(), *masking_cost.measure()]


def fairness_lines(options: argparse.Namespace) -> list[str]:
    return [
        f"setup: pgbench scale {SCALE}; {CLIENTS} clients, {THREADS} threads, {options.seconds} s per run;"
        f" {options.runs} runs interleaved (direct, pgbouncer, gatehouse, direct, ...) after a"
        f" {options.warmup} s warm-up of each",
        "  every client uses sslmode=require and SCRAM-SHA-256: direct to the cluster (ssl on, user postgres),",
        "  pgbouncer in session mode (client_tls_sslmode=require, auth_type=scram-sha-256, default_pool_size 20,",
        "  max_client_conn 200), Gatehouse with its defaults (recording on, upstream pool on, token SCRAM);",
        "  server side plain on loopback for both proxies (pgbouncer server_tls_sslmode=disable,",
        "  the Gatehouse connection registered with --tls disable). All on this machine, competing for cores.",
    ]


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, help="pgbench duration of each run (default 20; --quick 3)")
    parser.add_argument("--runs", type=int, help="runs of each measurement per target (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="short runs and 100,000 rows, for a smoke test")
    options = parser.parse_args(argv)
    options.seconds = options.seconds or (3 if options.quick else 20)
    options.runs = options.runs or (1 if options.quick else 3)
    options.rows = 100_000 if options.quick else STREAM_ROWS
    options.warmup = 1 if options.quick else 3
    if options.seconds < 1 or options.runs < 1:
        parser.error("--seconds and --runs must be at least 1")
    return options


def result_bytes(target: Target, rows: int) -> int:
    """The row text the streamed result carries (the size of its DataRow values)."""
    total = psql(target, STREAM_SIZE_SQL.format(rows=rows))
    return int(total)


def run_benchmark(options: argparse.Namespace, log: Callable[[str], None]) -> list[str]:
    """Set everything up, measure, tear down; returns the report."""
    header = machine_lines()
    print("\n".join(header), flush=True)
    with benchmark_setup(log) as setup:
        byte_count = result_bytes(setup.targets["direct"], options.rows)
        ticks = cpu_ticks()
        results = measure(setup, options, log)
        steal = steal_line(ticks)
        connect_title = f"pgbench -S -C (new connection per transaction, -c {CLIENTS} -j {THREADS}), TPS"
        stream_title = (
            f"{options.rows:,}-row result streamed to psql -A -t -o /dev/null ({byte_count / 1e6:.1f} MB of row text)"
        )
        return [
            "",
            "=== Gatehouse PostgreSQL benchmark ===",
            *header,
            *fairness_lines(options),
            "",
            *report_tps(f"pgbench -S (-c {CLIENTS} -j {THREADS}), TPS", results.tps),
            "",
            *report_tps(connect_title, results.tps_connect),
            "",
            *report_stream(stream_title, results.stream),
            "",
            *report_stream(
                f"{options.rows:,}-row result, 2 columns masked and 2 scanned by detectors under the policy",
                results.masked_stream,
            ),
            "",
            *policy_engine_lines(),
            "",
            *report_errors(results, setup.gateway),
            steal,
            f"load average after the run: {load_average()}",
        ]


def run_and_report(produce: Callable[[Callable[[str], None]], list[str]], failures: tuple = ()) -> int:
    """Run a benchmark with a timestamped log, print its report; the exit code (1 on a known failure, 130 on ^C)."""
    # A SIGTERM (a killed make) unwinds like Ctrl-C, so every process is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    try:
        report = produce(log)
    except KeyboardInterrupt:
        print("interrupted; everything started has been stopped", file=sys.stderr)
        return 130
    except (BenchError, GatewayError, PgClusterError, *failures) as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    print("\n".join(report), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)

    def produce(log: Callable[[str], None]) -> list[str]:
        ensure_pgbouncer()
        return run_benchmark(options, log)

    return run_and_report(produce)


if __name__ == "__main__":
    sys.exit(main())
