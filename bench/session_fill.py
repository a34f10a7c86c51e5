"""Fill a gateway node's database with many Session rows, for the sessions-list part of bench/reviewer_bench.py.

It runs inside the node's `manage.py shell` (bench/ on PYTHONPATH), so the
rows go through the node's own settings and database:

    BENCH_FILL_SESSIONS=100000 BENCH_FILL_REVIEWER=bench-reviewer \\
        python manage.py shell -c "import session_fill; session_fill.main()"

It makes FILL_CONNECTIONS connections and FILL_AGENTS agents through the
regular actions, gives the reviewer `view_sessions` on each connection, then
bulk-creates the sessions: spread over the last 90 days, mostly ended, with
a short `search_text` of a few statements. About 1 session in 100 mentions
RARE_WORD, the text-search case. The last line it writes is a JSON summary.
"""

import datetime
import json
import os
import random
import sys
import uuid

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm

from connections.actions import do_create_connection, do_create_service_account
from connections.models import Connection, ServiceAccount
from recordings.models import Session

FILL_CONNECTIONS = 12
FILL_AGENTS = 40
FILL_NODE = "bench-fill"  # not the running node's id, so it never treats these rows as its own live sessions
SPREAD_DAYS = 90
BATCH = 5000
SEED = 20240901
RARE_WORD = "refund_ledger"
RARE_STATEMENT = "SELECT * FROM refund_ledger WHERE id = $1"  # holds RARE_WORD
RARE_SHARE = 0.01
STATUS_WEIGHTS = {
    Session.Status.ENDED: 88,
    Session.Status.INTERRUPTED: 6,
    Session.Status.TERMINATED: 4,
    Session.Status.LIVE: 2,
}
APPLICATIONS = ["psql", "pgbench", "etl-runner", "psycopg", "migrate", "report-builder", ""]
STATEMENTS = [
    "SELECT * FROM orders WHERE id = $1",
    "SELECT count(*) FROM events WHERE created_at > $1",
    "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
    "INSERT INTO audit_log (actor, action) VALUES ($1, $2)",
    "DELETE FROM sessions_cache WHERE expires_at < now()",
    "SELECT id, email FROM users ORDER BY id LIMIT 100",
    "BEGIN",
    "COMMIT",
    "SET statement_timeout = '5s'",
    "SELECT name, price FROM products WHERE category = $1",
    "UPDATE jobs SET state = 'done' WHERE id = $1",
    "SELECT pg_size_pretty(pg_database_size(current_database()))",
    "CREATE INDEX CONCURRENTLY orders_created_idx ON orders (created_at)",
    "VACUUM ANALYZE orders",
    "SELECT * FROM invoices WHERE customer_id = $1 AND paid = false",
    "COPY exports TO STDOUT WITH (FORMAT csv)",
]


def main() -> None:
    """Create the rows described in the module docstring and write the summary line."""
    count = int(os.environ["BENCH_FILL_SESSIONS"])
    reviewer = get_user_model().objects.get(username=os.environ["BENCH_FILL_REVIEWER"])
    rng = random.Random(SEED)
    connections = make_connections(reviewer)
    agents = make_agents()
    now = timezone.now()
    rare = 0
    for start in range(0, count, BATCH):
        rows = [fake_session(rng, connections, agents, now) for _ in range(min(BATCH, count - start))]
        rare += sum(RARE_WORD in row.search_text for row in rows)
        with transaction.atomic():
            Session.objects.bulk_create(rows)
    summary = {
        "sessions": count,
        "rare_word": RARE_WORD,
        "rare_sessions": rare,
        "connection": connections[0].name,
        "connection_sessions": Session.objects.filter(connection=connections[0]).count(),
        "connection_ended": Session.objects.filter(connection=connections[0], status=Session.Status.ENDED).count(),
        "total_sessions": Session.objects.count(),
    }
    sys.stdout.write(json.dumps(summary) + "\n")


def make_connections(reviewer) -> list[Connection]:
    """FILL_CONNECTIONS placeholder upstreams (never dialled), each viewable by the reviewer."""
    made = []
    for number in range(FILL_CONNECTIONS):
        connection = do_create_connection(
            name=f"fill-{number:02d}",
            kind=Connection.Kind.POSTGRES,
            host=f"10.20.0.{number + 1}",
            port=5432,
            database=f"db{number:02d}",
            username="app",
            password="bench-fill-unused",
            tls_mode=Connection.TlsMode.REQUIRE,
        )
        assign_perm("connections.view_sessions", reviewer, connection)
        made.append(connection)
    return made


def make_agents() -> list[ServiceAccount]:
    return [do_create_service_account(f"fill-agent-{number:02d}") for number in range(FILL_AGENTS)]


def fake_session(
    rng: random.Random, connections: list[Connection], agents: list[ServiceAccount], now: datetime.datetime
) -> Session:
    """One plausible past session (not saved)."""
    agent = rng.choice(agents)
    status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
    started_at = now - datetime.timedelta(seconds=rng.uniform(0, SPREAD_DAYS * 86400))
    live = status == Session.Status.LIVE
    public_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    statements = rng.sample(STATEMENTS, rng.randint(1, 4))
    if rng.random() < RARE_SHARE:
        statements.append(RARE_STATEMENT)
    return Session(
        public_id=public_id,
        connection=rng.choice(connections),
        account=agent,
        actor=f"agent:{agent.name}",
        client_addr=f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        application_name=rng.choice(APPLICATIONS),
        node=FILL_NODE,
        started_at=started_at,
        ended_at=None if live else started_at + datetime.timedelta(seconds=rng.expovariate(1 / 120)),
        status=status,
        statements=rng.randint(1, 500),
        errors=rng.choice([0, 0, 0, 1, 2]),
        bytes_from_client=rng.randint(100, 100_000),
        bytes_to_client=rng.randint(100, 10_000_000),
        recording_path=f"{FILL_NODE}/{public_id}.jsonl",
        line_count=rng.randint(2, 2000),
        retain_until=now + datetime.timedelta(days=365),  # past every purge this run could trigger
        search_text="\n".join(statements),
    )
