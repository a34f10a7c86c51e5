"""Reviewer web app benchmark: approval round trip, pgbench with a live watcher, and the sessions list.

Starts a throwaway cluster and a gateway node (its defaults: SQLite, the
in-memory channel layer, recording on), then measures, in one run:

1. approval round trip: a psycopg bot's statement is held by a `review`
   guardrail; the benchmark, as the reviewer, approves it with a POST to
   /reviews/<id>/decide on the node's daphne (a logged-in Django session,
   CSRF as the page does it). Timed from sending the POST to the bot's rows
   arriving: p50, p95, min, max;
2. pgbench -S (8 clients, 2 threads) through the gateway, runs interleaved
   with no watcher and with one watcher of one of pgbench's live sessions:
   a plain websocket client on /ws/sessions/<uuid>/watch/ (the gateway's own
   cost of a watcher), and headless Chromium logged in as the reviewer on
   the session's page (a browser on the same two cores as everything else).
   Medians, each ratio to none, and what the watcher received;
3. the sessions list with 100,000 sessions in the node's database: the
   first page, a filtered page, text searches and the second page, p50 each.

Run with `make bench-web` or
`python bench/reviewer_bench.py [--seconds N] [--runs N] [--reviews N] [--sessions N] [--quick]`.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script: the repo's packages are not on the path otherwise

from pg_bench import (  # noqa: E402
    CLIENTS,
    HOST,
    SCALE,
    THREADS,
    BenchError,
    PgbenchRun,
    Target,
    bench_gateway,
    load_average,
    pgbench_cluster,
    pgbench_command,
    pgbench_outcome,
    run_and_report,
    tool_version,
    tree_cpu_seconds,
)
from pg_bench import machine_lines as pg_machine_lines  # noqa: E402
from reviewer_web import (  # noqa: E402
    BrowserWatcher,
    ReviewerClient,
    SocketWatcher,
    WatchTally,
    WebError,
    form_token,
)

from tests.support.gateway_process import GatewayProcess, provision_bot  # noqa: E402
from tests.support.pg_cluster import DATABASE, SUPERUSER, PgCluster  # noqa: E402
from tests.support.ports import wait_for_port  # noqa: E402

BENCH_CONNECTION = "bench"  # pgbench's connection, no policy
REVIEWED_CONNECTION = "bench-reviewed"  # the bot's connection, under REVIEW_POLICY
AGENT = "bench-bot"
REVIEWER = "bench-reviewer"
REVIEWER_EMAIL = "bench-reviewer@example.com"
REVIEW_RULE = "bench-approval"
REVIEW_POLICY = f"""\
policies:
  - name: bench-review
    connections: [{REVIEWED_CONNECTION}]
    default: allow
    guardrails:
      - {{name: {REVIEW_RULE}, match: {{kind: [SELECT], regex: 'bench_review'}}, action: review, timeout: 60}}
"""
HELD_SQL = "SELECT 'held' AS bench_review, %s::int AS number"
HELD_TIMEOUT = 30.0
WARMUP_REVIEWS = 2
WARMUP_PAGE_REQUESTS = 2
PGBENCH_APP = "pgbench"  # the application_name pgbench sets
SETTLE_WINDOW = 0.5  # seconds
SETTLED_SHARE = 0.05  # of one core: the browser's side counts as idle below this
# Runs inside the node's `manage.py shell`: the reviewer, who may review and watch every connection there is.
REVIEWER_SCRIPT = """
import os
from django.contrib.auth import get_user_model
from guardian.shortcuts import assign_perm
from connections.models import Connection
user = get_user_model().objects.create_user(
    os.environ["BENCH_REVIEWER"], os.environ["BENCH_REVIEWER_EMAIL"], os.environ["BENCH_REVIEWER_PASSWORD"]
)
for connection in Connection.objects.all():
    assign_perm("connections.review", user, connection)
    assign_perm("connections.view_sessions", user, connection)
"""
NO_MATCH_WORD = "no_statement_says_this"


# --- the machine ------------------------------------------------------------------


def machine_lines() -> list[str]:
    """nproc, CPU model, memory and the versions of what this benchmark drives, for the top of the report."""
    versions = [
        tool_version(["pgbench", "--version"]),
        tool_version(["/usr/bin/chromium", "--version"]),
        *(f"{name} {importlib.metadata.version(name)}" for name in ("Django", "daphne", "channels", "playwright")),
    ]
    return pg_machine_lines(versions)


# --- the setup --------------------------------------------------------------------------


@dataclass
class Setup:
    """The running parts: cluster, gateway node, the reviewer's password, and pgbench's way in."""

    cluster: PgCluster
    gateway: GatewayProcess
    reviewer_password: str
    pgbench: Target

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.gateway.http_port}"

    @property
    def database(self) -> Path:
        return self.gateway.data_dir / "gatehouse.sqlite3"


@contextmanager
def benchmark_setup(log: Callable[[str], None]) -> Iterator[Setup]:
    """Cluster with pgbench tables, a gateway node with the bot, the reviewed connection and the reviewer."""
    with ExitStack() as stack:
        cluster, _direct = pgbench_cluster(stack, log)
        log("setting up the gateway node (connections, policy, reviewer) ...")
        gateway, gateway_dir = bench_gateway(stack, "gatehouse-bench-web-")
        provision_bot(gateway, cluster, connection=BENCH_CONNECTION, agent=AGENT, tls="disable")
        add_reviewed_connection(gateway, cluster, gateway_dir / "review-policy.yaml")
        password = uuid.uuid4().hex
        gateway.manage("shell", "-c", REVIEWER_SCRIPT, env=reviewer_env(password), check=True)
        gateway.start()
        if not wait_for_port(HOST, gateway.http_port, 30, still_starting=lambda: gateway.running):
            raise BenchError(f"the gateway's HTTP port did not open:\n{gateway.log_tail()}")
        pgbench = Target("gatehouse", gateway.pg_port, BENCH_CONNECTION, AGENT, gateway.token or "")
        yield Setup(cluster, gateway, password, pgbench)


def reviewer_env(password: str) -> dict[str, str]:
    return {"BENCH_REVIEWER": REVIEWER, "BENCH_REVIEWER_EMAIL": REVIEWER_EMAIL, "BENCH_REVIEWER_PASSWORD": password}


def add_reviewed_connection(gateway: GatewayProcess, cluster: PgCluster, policy_file: Path) -> None:
    """A second connection to the same database for the bot, whose marked SELECTs wait for a review."""
    gateway.manage(
        *("connections", "add", REVIEWED_CONNECTION, "--kind", "postgres", "--host", cluster.host),
        *("--port", str(cluster.port), "--database", DATABASE, "--user", SUPERUSER),
        *("--password-env", "BENCH_UPSTREAM_PASSWORD", "--tls", "disable"),
        env={"BENCH_UPSTREAM_PASSWORD": cluster.superuser_password},
        check=True,
    )
    gateway.manage("agents", "grant", AGENT, REVIEWED_CONNECTION, check=True)
    policy_file.write_text(REVIEW_POLICY)
    gateway.manage("policies", "apply", str(policy_file), check=True)


def node_rows(setup: Setup, query: str, params: tuple = ()) -> list[tuple]:
    """Rows from the node's SQLite database, opened read-only (the node keeps writing it)."""
    with closing(sqlite3.connect(f"file:{setup.database}?mode=ro", uri=True, timeout=20)) as conn:
        return conn.execute(query, params).fetchall()


def as_uuid(stored: str) -> str:
    """A UUID as URLs show it (SQLite stores 32 hex digits)."""
    return str(uuid.UUID(stored))


def wait_for(find: Callable[[], str | None], timeout: float, what: str, interval: float = 0.005) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(interval)
    raise BenchError(f"{what} did not appear within {timeout:g} s")


def reviewer_client(setup: Setup) -> ReviewerClient:
    """The reviewer, logged in through allauth's form."""
    client = ReviewerClient(HOST, setup.gateway.http_port)
    client.login(REVIEWER_EMAIL, setup.reviewer_password)
    return client


# --- 1. approval round trip ---------------------------------------------------------


class HeldStatement:
    """The bot's statement in a thread: it waits for a review; `answered_at` is when its row arrived."""

    def __init__(self, conn: psycopg.Connection, number: int) -> None:
        self.number = number
        self.answered_at: float | None = None
        self.row: tuple | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
        self._thread.start()

    def _run(self, conn: psycopg.Connection) -> None:
        try:
            self.row = conn.execute(HELD_SQL, (self.number,)).fetchone()
            self.answered_at = time.monotonic()
        except psycopg.Error as error:
            self.error = error

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def answered(self) -> float:
        """When the rows came (time.monotonic()); raises BenchError if the bot failed or got the wrong row."""
        self._thread.join(HELD_TIMEOUT)
        if self._thread.is_alive():
            raise BenchError(f"the bot still waits {HELD_TIMEOUT:g} s after the approval")
        if self.error is not None or self.row != ("held", self.number) or self.answered_at is None:
            raise BenchError(f"the bot got {self.row!r} / {self.error!r} instead of its row")
        return self.answered_at


@dataclass
class Approval:
    """One approval: from sending the POST to the bot's row, and to the POST's own answer (seconds)."""

    round_trip: float
    post: float


def pending_review(setup: Setup, held: HeldStatement, seen: set[str]) -> str:
    """The id of the newest pending review of REVIEW_RULE not decided yet, once the node has made it."""

    def find() -> str | None:
        if held.finished:
            raise BenchError(f"the bot's statement was not held: it got {held.row!r} / {held.error!r}")
        rows = node_rows(
            setup,
            "SELECT public_id FROM approvals_review WHERE status = 'pending' AND rule = ? ORDER BY id DESC LIMIT 1",
            (REVIEW_RULE,),
        )
        found = as_uuid(rows[0][0]) if rows else None
        return found if found not in seen else None

    return wait_for(find, HELD_TIMEOUT, "a pending review")


def approve_one(setup: Setup, client: ReviewerClient, conn: psycopg.Connection, number: int, seen: set) -> Approval:
    """Hold one statement, open its review page, then time the approve POST until the bot's row arrives."""
    held = HeldStatement(conn, number)
    review_id = pending_review(setup, held, seen)
    seen.add(review_id)
    page = client.get(f"/reviews/{review_id}/")
    if page.status != 200:
        raise BenchError(f"the review page answered {page.status}")
    token = form_token(page.body)
    sent = time.monotonic()
    reply = client.post_form(f"/reviews/{review_id}/decide", {"decision": "approve", "comment": ""}, token)
    answered_post = time.monotonic()
    if reply.status != 302:
        raise BenchError(f"the approve POST answered {reply.status}: {reply.body[:300]}")
    return Approval(held.answered() - sent, answered_post - sent)


def measure_approvals(setup: Setup, client: ReviewerClient, count: int, log: Callable[[str], None]) -> list[Approval]:
    """WARMUP_REVIEWS untimed, then `count` timed approvals of the bot's held statements, one at a time."""
    dsn = setup.gateway.dsn(dbname=REVIEWED_CONNECTION, sslmode="require")
    approvals = []
    seen: set[str] = set()
    # psycopg prepares the statement from its 6th run on: each Bind of it is held for review like a Parse.
    with psycopg.connect(dsn, autocommit=True, application_name="bench-held-bot") as conn:
        for number in range(WARMUP_REVIEWS + count):
            approval = approve_one(setup, client, conn, number, seen)
            if number >= WARMUP_REVIEWS:
                approvals.append(approval)
    times = sorted(a.round_trip * 1000 for a in approvals)
    log(f"approvals: {count} decided, round trip p50 {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms")
    return approvals


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (share 0.95 for p95)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


def report_approvals(approvals: list[Approval]) -> list[str]:
    trips = [a.round_trip * 1000 for a in approvals]
    posts = [a.post * 1000 for a in approvals]
    p50 = statistics.median(trips)
    verdict = "met" if p50 < 100 else "MISSED"
    return [
        f"1. approval round trip: {len(trips)} held statements, each approved by a POST to /reviews/<id>/decide"
        f" ({WARMUP_REVIEWS} untimed first)",
        "   timed from sending the POST to the psycopg bot (through the gateway) receiving its row",
        f"   round trip   p50 {p50:7.1f} ms   p95 {percentile(trips, 0.95):7.1f} ms"
        f"   min {min(trips):7.1f} ms   max {max(trips):7.1f} ms   (target p50 < 100 ms: {verdict})",
        f"   POST answer  p50 {statistics.median(posts):7.1f} ms   p95 {percentile(posts, 0.95):7.1f} ms"
        f"   min {min(posts):7.1f} ms   max {max(posts):7.1f} ms   (the 302 back to the reviewer)",
    ]


# --- 2. pgbench with a live watcher ---------------------------------------------------


def start_pgbench(target: Target, seconds: int) -> subprocess.Popen[str]:
    """pgbench -S with 8 clients and 2 threads for SECONDS against TARGET, in the background."""
    return subprocess.Popen(
        pgbench_command(seconds),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=target.env(),
        stdin=subprocess.DEVNULL,
    )


def finish_pgbench(process: subprocess.Popen[str], seconds: int) -> PgbenchRun:
    """Wait for pgbench and read its TPS, transactions and failures."""
    stdout, stderr = process.communicate(timeout=seconds + 120)
    return pgbench_outcome("gatehouse", stdout, stderr, process.returncode)


@contextmanager
def running_pgbench(target: Target, seconds: int) -> Iterator[subprocess.Popen[str]]:
    process = start_pgbench(target, seconds)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@dataclass
class WatchRun:
    """One pgbench run with or without the watcher, and what the gateway and the watcher's side spent."""

    mode: str
    pgbench: PgbenchRun
    gateway_cpu_us: float  # per transaction, user + system
    watcher_cpu_s: float  # Chromium, the Playwright driver and this script, over the run
    tally: WatchTally | None = None
    attached_after: float | None = None  # seconds from pgbench's start to the watcher's first frame


def live_pgbench_session(setup: Setup, after_id: int) -> str:
    """The public id of the newest of pgbench's client sessions opened after row `after_id`, once all are live.

    Not the first: pgbench's first connection only reads the scale and leaves before the clients connect.
    """

    def find() -> str | None:
        rows = node_rows(
            setup,
            "SELECT public_id FROM recordings_session WHERE id > ? AND status = 'live' AND application_name = ?"
            " ORDER BY id",
            (after_id, PGBENCH_APP),
        )
        return as_uuid(rows[-1][0]) if len(rows) >= CLIENTS else None

    return wait_for(find, 30, "a live pgbench session", interval=0.02)


def last_session_id(setup: Setup) -> int:
    return node_rows(setup, "SELECT coalesce(max(id), 0) FROM recordings_session")[0][0]


def settle(pid: int, timeout: float = 15.0) -> None:
    """Wait until a process tree (this script's: the gateway node, the Playwright driver, Chromium) is nearly idle.

    A freshly started browser, one tearing down a long live page, or a node
    sealing the last run's recordings works on for seconds; a run must not
    start while they compete for the cores.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = tree_cpu_seconds(pid)
        time.sleep(SETTLE_WINDOW)
        if tree_cpu_seconds(pid) - before < SETTLE_WINDOW * SETTLED_SHARE:
            return


def pgbench_run(setup: Setup, watcher, seconds: int, mode: str) -> WatchRun:
    """One pgbench -S run; with a `watcher`, it watches one of its sessions from the first moment it can."""
    watched = watcher is not None
    gateway_pid = setup.gateway.process.pid
    after_id = last_session_id(setup)
    cpu_before = tree_cpu_seconds(gateway_pid), tree_cpu_seconds(os.getpid())
    tally, attached_after = None, None
    with running_pgbench(setup.pgbench, seconds) as process:
        started = time.monotonic()
        if watched:
            tally = watcher.watch(live_pgbench_session(setup, after_id), timeout=15)
            attached_after = tally.first_frame_at - started
            while process.poll() is None:
                watcher.pump(0.2)
        outcome = finish_pgbench(process, seconds)
    gateway_cpu, own_cpu = tree_cpu_seconds(gateway_pid), tree_cpu_seconds(os.getpid())
    if watched:
        watcher.idle()  # closes the websocket before the next run
        settle(os.getpid())
    per_transaction = (gateway_cpu - cpu_before[0]) / outcome.processed * 1e6 if outcome.processed else 0.0
    # The gateway is this script's child too: the watcher's side is the rest of this process tree.
    watcher_cpu = (own_cpu - cpu_before[1]) - (gateway_cpu - cpu_before[0])
    return WatchRun(mode, outcome, per_transaction, watcher_cpu, tally, attached_after)


def measure_watch(
    setup: Setup, watchers: dict[str, object], options: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, list[WatchRun]]:
    """A warm-up, then RUNS rounds of pgbench runs: none, then each watcher (socket, browser), ..."""
    settle(os.getpid())
    with running_pgbench(setup.pgbench, options.warmup) as process:
        finish_pgbench(process, options.warmup)
    modes = {"none": None, **watchers}
    runs: dict[str, list[WatchRun]] = {mode: [] for mode in modes}
    for number in range(1, options.runs + 1):
        for mode, watcher in modes.items():
            run = pgbench_run(setup, watcher, options.seconds, mode)
            runs[run.mode].append(run)
            seen = f"  watcher: {run.tally.frames} frames, {run.tally.events} events" if run.tally else ""
            log(
                f"run {number}: pgbench -S {run.mode:<8} {run.pgbench.tps:10.1f} tps  failed={run.pgbench.failed}{seen}"
            )
    return runs


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _each(values: list, spec: str) -> str:
    return ", ".join(format(value, spec) for value in values)


def _by_mode(runs: dict[str, list[WatchRun]], attribute: str, spec: str) -> str:
    """Each mode's median of one WatchRun attribute."""
    return "   ".join(
        f"{mode} {format(_median([getattr(r, attribute) for r in mode_runs]), spec)}"
        for mode, mode_runs in runs.items()
    )


def report_watch(runs: dict[str, list[WatchRun]], options: argparse.Namespace) -> list[str]:
    """TPS by mode and the ratios, then what watching cost and what the watchers got."""
    medians = {mode: _median([r.pgbench.tps for r in mode_runs]) for mode, mode_runs in runs.items()}
    lines = [
        f"2. pgbench -S -c {CLIENTS} -j {THREADS} through the gateway, {options.seconds} s per run,"
        f" {options.runs} runs of each interleaved (none, socket, browser, ...), each watcher on one of pgbench's",
        "   live sessions: socket = a plain websocket client on /ws/sessions/<uuid>/watch/ with the reviewer's",
        "   cookie; browser = headless Chromium on /sessions/<uuid>/ (its htmx websocket), on about:blank otherwise",
    ]
    for mode, mode_runs in runs.items():
        failed = sum(r.pgbench.failed for r in mode_runs)
        lines.append(
            f"   {mode:<8} median {medians[mode]:10.1f} tps   runs [{_each([r.pgbench.tps for r in mode_runs], '.1f')}]"
            f"   failed transactions {failed}"
        )
    for mode in runs.keys() - {"none"}:
        ratio = medians[mode] / medians["none"] if medians["none"] else 0.0
        lines.append(f"   ratio {mode}/none {ratio:.3f} (target >= 0.95: {'met' if ratio >= 0.95 else 'MISSED'})")
    return lines + watch_cost_lines(runs, options.seconds)


def watch_cost_lines(runs: dict[str, list[WatchRun]], seconds: int) -> list[str]:
    """The gateway's CPU per transaction, the watcher side's CPU, and what reached each watcher."""
    lines = [
        "   gateway CPU per transaction, user + system, median (us): " + _by_mode(runs, "gateway_cpu_us", ".1f"),
        "   watcher side CPU per run (the watcher's threads or Chromium and its driver, this script), median (s): "
        + _by_mode(runs, "watcher_cpu_s", ".2f"),
    ]
    for mode in sorted(runs.keys() - {"none"}):
        watched = runs[mode]
        lines += [
            f"   {mode}: attached after (s) [{_each([r.attached_after for r in watched], '.2f')}] of each {seconds} s"
            f" run; received per run: frames [{_each([r.tally.frames for r in watched], 'd')}],"
            f" events shown [{_each([r.tally.events for r in watched], 'd')}],",
            f"     events skipped as too fast [{_each([r.tally.skipped for r in watched], 'd')}],"
            f" KiB [{_each([r.tally.bytes / 1024 for r in watched], '.0f')}]",
        ]
    return lines


# --- 3. the sessions list ------------------------------------------------------------------


def fill_sessions(setup: Setup, count: int, log: Callable[[str], None]) -> dict:
    """COUNT Session rows in the node's database (bench/session_fill.py in `manage.py shell`); its summary."""
    log(f"filling the node's database with {count:,} sessions ...")
    started = time.monotonic()
    env = {"PYTHONPATH": str(BENCH_DIR), "BENCH_FILL_SESSIONS": str(count), "BENCH_FILL_REVIEWER": REVIEWER}
    done = setup.gateway.manage("shell", "-c", "import session_fill; session_fill.main()", env=env, timeout=1800)
    if done.returncode != 0:
        raise BenchError(f"filling sessions failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["fill_seconds"] = time.monotonic() - started
    log(f"filled in {summary['fill_seconds']:.1f} s")
    return summary


@dataclass
class PageCase:
    """One sessions-list request, timed REQUESTS times."""

    label: str
    path: str
    times_ms: list[float] = field(default_factory=list)
    rows: int = 0


SESSION_LINK = re.compile(r'href="/sessions/[0-9a-f-]{36}/"')
OLDER_LINK = re.compile(r'href="\?([^"]*)" rel="next"')


def page_cases(client: ReviewerClient, summary: dict) -> list[PageCase]:
    """The cases: the first page, a filtered one, two text searches, and the second page by its cursor."""
    connection, rare_word = summary["connection"], summary["rare_word"]
    first = client.get("/sessions/")
    older = OLDER_LINK.search(first.body)
    if first.status != 200 or older is None:
        raise BenchError(f"the first sessions page answered {first.status} without an 'Older' link")
    return [
        PageCase("first page", "/sessions/"),
        PageCase(f"connection={connection} & status=ended", f"/sessions/?connection={connection}&status=ended"),
        PageCase(f"q={rare_word} (~1% match)", f"/sessions/?q={rare_word}"),
        PageCase(f"q={NO_MATCH_WORD} (no match)", f"/sessions/?q={NO_MATCH_WORD}"),
        PageCase("second page (cursor)", "/sessions/?" + unescape(older.group(1))),
    ]


def time_page(client: ReviewerClient, case: PageCase, requests: int) -> None:
    """GET the case's page WARMUP_PAGE_REQUESTS times untimed, then REQUESTS times timed."""
    for number in range(WARMUP_PAGE_REQUESTS + requests):
        started = time.monotonic()
        page = client.get(case.path)
        elapsed = (time.monotonic() - started) * 1000
        if page.status != 200:
            raise BenchError(f"GET {case.path} answered {page.status}")
        case.rows = len(SESSION_LINK.findall(page.body))
        if number >= WARMUP_PAGE_REQUESTS:
            case.times_ms.append(elapsed)


def measure_session_list(
    setup: Setup, client: ReviewerClient, options: argparse.Namespace, log: Callable[[str], None]
) -> tuple[dict, list[PageCase]]:
    summary = fill_sessions(setup, options.sessions, log)
    cases = page_cases(client, summary)
    for case in cases:
        time_page(client, case, options.page_requests)
        log(f"sessions list: {case.label}: p50 {statistics.median(case.times_ms):.1f} ms, {case.rows} rows")
    return summary, cases


def report_session_list(summary: dict, cases: list[PageCase], requests: int) -> list[str]:
    lines = [
        f"3. sessions list, GET /sessions/ as the reviewer (view_sessions on every connection, not a superuser),"
        f" {requests} requests per case after {WARMUP_PAGE_REQUESTS} untimed",
        f"   {summary['total_sessions']:,} sessions in the node's SQLite database ({summary['sessions']:,} filled in"
        f" {summary['fill_seconds']:.1f} s over 12 connections and 40 agents, started over 90 days);"
        f" {summary['connection']}: {summary['connection_sessions']:,} sessions, {summary['connection_ended']:,} ended;"
        f" '{summary['rare_word']}' in {summary['rare_sessions']:,}",
    ]
    for case in cases:
        times = case.times_ms
        lines.append(
            f"   {case.label:<48} p50 {statistics.median(times):7.1f} ms   p95 {percentile(times, 0.95):7.1f} ms"
            f"   max {max(times):7.1f} ms   rows shown {case.rows}"
        )
    return lines


# --- the report ---------------------------------------------------------------------------


def report_problems(setup: Setup, runs: dict[str, list[WatchRun]]) -> list[str]:
    """Client errors and gateway log lines that point at a problem (empty if there are none)."""
    lines = []
    for mode, mode_runs in runs.items():
        errors = [e for r in mode_runs for e in r.pgbench.errors]
        if errors:
            lines.append(f"  pgbench -S {mode}: {len(errors)} error lines, first: {errors[0]}")
        closed = [url for r in mode_runs if r.tally for url in r.tally.closed]
        if closed:
            lines.append(f"  the watch websocket closed during {len(closed)} watched runs")
    log_problems = [
        line for line in setup.gateway.log_text().splitlines() if re.search(r"ERROR|Traceback|Exception|CRITICAL", line)
    ]
    if log_problems:
        lines.append(f"  gateway log: {len(log_problems)} lines with ERROR/Traceback/Exception; first few:")
        lines += [f"    {line}" for line in log_problems[:10]]
    if not setup.gateway.running:
        lines.append(f"  the gateway process exited with {setup.gateway.process.returncode}")
    return ["problems:", *lines] if lines else ["problems: none (no client errors, no errors in the gateway log)"]


def setup_lines() -> list[str]:
    return [
        f"setup: one gateway node with its defaults (SQLite, in-memory channel layer, recording on, pool on);"
        f" pgbench scale {SCALE}; clients use sslmode=require and SCRAM;",
        f"  the node's daphne on {HOST}, reached over keep-alive http.client as the reviewer (allauth login,"
        " CSRF as the pages send it); started " + datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    ]


def run_benchmark(options: argparse.Namespace, log: Callable[[str], None]) -> list[str]:
    """Set everything up, measure, tear down; returns the report."""
    header = machine_lines()
    print("\n".join(header), flush=True)
    with benchmark_setup(log) as setup, ExitStack() as stack:
        client = reviewer_client(setup)
        stack.callback(client.close)
        log(f"approval round trip, {options.reviews} reviews ...")
        approvals = measure_approvals(setup, client, options.reviews, log)
        log("starting Chromium and logging in ...")
        browser = BrowserWatcher(setup.origin)
        stack.callback(browser.close)
        browser.login(REVIEWER_EMAIL, setup.reviewer_password)
        plain = SocketWatcher(HOST, setup.gateway.http_port, client.cookies)
        stack.callback(plain.close)
        runs = measure_watch(setup, {"socket": plain, "browser": browser}, options, log)
        summary, cases = measure_session_list(setup, client, options, log)
        return [
            "",
            "=== Gatehouse reviewer web app benchmark ===",
            *header,
            *setup_lines(),
            "",
            *report_approvals(approvals),
            "",
            *report_watch(runs, options),
            "",
            *report_session_list(summary, cases, options.page_requests),
            "",
            *report_problems(setup, runs),
            f"load average after the run: {load_average()}",
        ]


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, help="pgbench duration of each run (default 20; --quick 3)")
    parser.add_argument("--runs", type=int, help="pgbench runs with and without the watcher (default 3; --quick 1)")
    parser.add_argument("--reviews", type=int, help="timed approvals (default 30; --quick 5)")
    parser.add_argument("--sessions", type=int, help="sessions filled in for the list (default 100000; --quick 10000)")
    parser.add_argument("--quick", action="store_true", help="short runs and fewer of everything, for a smoke test")
    options = parser.parse_args(argv)
    options.seconds = options.seconds or (3 if options.quick else 20)
    options.runs = options.runs or (1 if options.quick else 3)
    options.reviews = options.reviews or (5 if options.quick else 30)
    options.sessions = options.sessions or (10_000 if options.quick else 100_000)
    options.page_requests = 5 if options.quick else 20
    options.warmup = 1 if options.quick else 3
    if min(options.seconds, options.runs, options.reviews) < 1 or options.sessions < 1000:
        parser.error("--seconds, --runs and --reviews must be at least 1, --sessions at least 1000")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    return run_and_report(lambda log: run_benchmark(options, log), failures=(WebError,))


if __name__ == "__main__":
    sys.exit(main())
