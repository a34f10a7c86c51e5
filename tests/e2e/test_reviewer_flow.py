"""A reviewer in headless Chromium meets a bot on one real gateway node and a real throwaway PostgreSQL.

The bot holds statements for review with the real psql and runs sessions
with psycopg; the reviewer decides, watches, ends and replays them from the
pages, which stay live over their websockets without a reload.
"""

import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect
from psycopg import sql

from tests.e2e.conftest import (
    REVIEW_RULE,
    Reviewer,
    add_reviewed_connection,
    add_reviewer,
    assert_not_reloaded,
    bot_psql,
    log_in,
    mark_page,
)
from tests.protocols.nodes import public_id, running_node, unique_name, wait_for_recorded, wait_for_session
from tests.support.gateway_process import GatewayProcess
from tests.support.pg_cluster import PgCluster

TERMINATE_TIMEOUT = 15.0
SELECTED = re.compile(r"\bselected\b")


@dataclass(frozen=True)
class Site:
    """The node under test, its reviewed connection, and a reviewer logged in to its pages."""

    node: GatewayProcess
    reviewed: str
    reviewer: Reviewer
    login_state: dict


@pytest.fixture(scope="module")
def site(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("e2e-node")
    with running_node(data_dir, pg_cluster, start=False) as node:
        reviewed = add_reviewed_connection(node, pg_cluster, tmp_path_factory.mktemp("e2e-policy"))
        reviewer = add_reviewer(node, node.connection_name, reviewed)
        node.start()
        yield Site(node, reviewed, reviewer, log_in(browser, node, reviewer))


@pytest.fixture
def direct(pg_cluster: PgCluster) -> Iterator[psycopg.Connection]:
    """A connection straight to the cluster's app database, to see what did (not) run upstream."""
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def table_name(direct: psycopg.Connection) -> Iterator[Callable[[str], str]]:
    """Makes unique table names for held CREATE statements; drops the tables afterwards."""
    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(unique_name(prefix).replace("-", "_"))
        return made[-1]

    yield make
    for name in made:
        direct.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def table_exists(direct: psycopg.Connection, name: str) -> bool:
    return direct.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)


def pending_row(page: Page, statement: str):
    """The row of `statement` in the page's live pending-reviews block."""
    return page.locator("#pending-reviews [data-review-row]").filter(has_text=statement)


def test_it_shows_a_held_statement_on_the_open_dashboard_and_runs_it_once_approved(
    site: Site, open_page, table_name, direct
) -> None:
    page = open_page(site.node, site.login_state, "/")
    mark_page(page)
    table = table_name("e2e_approved")
    create = f"CREATE TABLE {table} (id int, note text)"
    insert = f"INSERT INTO {table} VALUES (1, 'approved in the browser')"  # noqa: S608 (a name the test made)
    select = f"SELECT note FROM {table}"  # noqa: S608 (a name the test made)
    finished = bot_psql(site.node, site.reviewed, create, insert, select)

    row = pending_row(page, create)
    expect(row).to_be_visible()  # pushed by the feed: the page was open before the statement came
    assert_not_reloaded(page)
    expect(row).to_contain_text(REVIEW_RULE)
    expect(row).to_contain_text(site.node.agent_name)
    assert not table_exists(direct, table)  # held: nothing went upstream yet

    row.get_by_role("button", name="Approve").click()

    result = finished()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["CREATE TABLE", "INSERT 0 1", "approved in the browser"]
    expect(pending_row(page, create)).to_have_count(0)
    assert_not_reloaded(page)


def test_it_sends_a_deny_from_the_review_page_to_the_bots_psql_as_an_error(
    site: Site, open_page, table_name, direct
) -> None:
    page = open_page(site.node, site.login_state, "/")
    table = table_name("e2e_denied")
    create = f"CREATE TABLE {table} (id int)"
    finished = bot_psql(site.node, site.reviewed, create, "SELECT 'still usable after the deny'")

    pending_row(page, create).get_by_role("link", name=create).click()
    expect(page.get_by_role("heading", name="Held statement")).to_contain_text("pending")
    expect(page.locator("pre.sql")).to_have_text(create)
    page.get_by_label("Comment").fill("not during the freeze")
    page.get_by_role("button", name="Deny").click()

    expect(page.get_by_role("status")).to_have_text("You denied this statement; it is now denied.")
    expect(page.get_by_role("heading", name="Held statement")).to_contain_text("denied")
    result = finished()
    denial = f'Gatehouse denied this statement: rule "{REVIEW_RULE}": denied in review by {site.reviewer.username}'
    assert result.stderr.splitlines() == [f"ERROR:  {denial}: not during the freeze"]
    assert result.stdout.splitlines() == ["still usable after the deny"]  # the session went on
    assert not table_exists(direct, table)


def test_it_approves_and_denies_with_the_keyboard_on_the_reviews_page(
    site: Site, open_page, table_name, direct
) -> None:
    page = open_page(site.node, site.login_state, "/reviews/")
    first_table, second_table = table_name("e2e_key_a"), table_name("e2e_key_d")
    first_create, second_create = f"CREATE TABLE {first_table} (id int)", f"CREATE TABLE {second_table} (id int)"
    first = bot_psql(site.node, site.reviewed, first_create)
    expect(pending_row(page, first_create)).to_be_visible()
    second = bot_psql(site.node, site.reviewed, second_create)
    expect(pending_row(page, second_create)).to_be_visible()  # listed oldest first: below the first

    page.keyboard.press("j")
    expect(pending_row(page, first_create)).to_have_class(SELECTED)
    page.keyboard.press("j")
    expect(pending_row(page, second_create)).to_have_class(SELECTED)
    expect(pending_row(page, first_create)).not_to_have_class(SELECTED)
    page.keyboard.press("k")
    expect(pending_row(page, first_create)).to_have_class(SELECTED)
    page.keyboard.press("a")

    approved = first()
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == "CREATE TABLE"
    assert table_exists(direct, first_table)
    expect(pending_row(page, first_create)).to_have_count(0)
    expect(pending_row(page, second_create)).to_be_visible()

    page.keyboard.press("j")
    expect(pending_row(page, second_create)).to_have_class(SELECTED)
    page.keyboard.press("d")

    denied = second()
    assert f"denied in review by {site.reviewer.username}" in denied.stderr
    assert not table_exists(direct, second_table)
    expect(page.locator("#pending-reviews [data-review-row]")).to_have_count(0)


def bot_session(node: GatewayProcess, application_name: str) -> psycopg.Connection:
    """A psycopg session of the node's bot on its own connection."""
    return psycopg.connect(node.dsn(), application_name=application_name, autocommit=True, connect_timeout=15)


def test_it_shows_a_live_sessions_statements_to_its_watcher_as_they_happen(site: Site, open_page) -> None:
    application_name = unique_name("e2e-watch")
    with bot_session(site.node, application_name) as bot:
        bot.execute("SELECT 'before the watcher came'")
        row = wait_for_session(site.node, application_name, sealed=False)
        wait_for_recorded(site.node, row, "before the watcher came")
        page = open_page(site.node, site.login_state, f"/sessions/{public_id(row)}/")
        mark_page(page)
        events = page.locator("#live-events")
        expect(page.get_by_role("heading", name="Live", exact=True)).to_be_visible()
        expect(events).to_contain_text("before the watcher came")  # a late joiner gets what happened so far

        for number in (1, 2, 3):
            statement = f"SELECT upper('watched live {number}') AS shout"
            assert bot.execute(statement).fetchall() == [(f"WATCHED LIVE {number}",)]
            expect(events.locator("pre.sql").filter(has_text=statement)).to_have_count(1)
            expect(events.get_by_role("cell", name=f"WATCHED LIVE {number}", exact=True)).to_be_visible()
        assert_not_reloaded(page)


def until_closed(bot: psycopg.Connection) -> psycopg.OperationalError:
    """Keep querying until the gateway closes the session; the error the client got."""
    deadline = time.monotonic() + TERMINATE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            bot.execute("SELECT 1")
        except psycopg.OperationalError as closed:
            return closed
        time.sleep(0.1)
    raise AssertionError(f"the bot's session was still open {TERMINATE_TIMEOUT:g} s after the terminate")


def test_it_ends_a_live_session_from_its_page(site: Site, open_page) -> None:
    application_name = unique_name("e2e-end")
    confirmations: list[str] = []
    with bot_session(site.node, application_name) as bot:
        bot.execute("SELECT 'about to be ended'")
        row = wait_for_session(site.node, application_name, sealed=False)
        page = open_page(site.node, site.login_state, f"/sessions/{public_id(row)}/")
        page.once("dialog", lambda dialog: (confirmations.append(dialog.message), dialog.accept()))

        page.get_by_role("button", name="Terminate").click()

        expect(page.get_by_role("status")).to_have_text("The session is being ended.")
        assert confirmations == ["End this session now? The client is disconnected."]
        closed = until_closed(bot)
    assert f"terminated by {site.reviewer.username}" in str(closed)
    row = wait_for_session(site.node, application_name, sealed=True)
    assert (row["status"], row["terminated_by"]) == ("terminated", site.reviewer.username)

    page.reload()
    expect(page.locator("h1 .pill")).to_have_text("Terminated")
    expect(page.locator(".facts div").filter(has_text="Terminated by").locator("dd")).to_have_text(
        site.reviewer.username
    )
    expect(page.get_by_role("button", name="Terminate")).to_have_count(0)
    expect(page.locator(".timeline")).to_contain_text(
        f"by {site.reviewer.username}: ended by a reviewer from the live watch page"
    )


def test_it_replays_a_finished_session_with_its_statements_and_rows(site: Site, open_page) -> None:
    application_name = unique_name("e2e-replay")
    statement = "SELECT n, 'replayed row ' || n AS label FROM generate_series(1, 3) AS n"
    with bot_session(site.node, application_name) as bot:
        assert bot.execute(statement).fetchall() == [(n, f"replayed row {n}") for n in (1, 2, 3)]
    wait_for_session(site.node, application_name, sealed=True)

    search = urllib.parse.urlencode({"q": "replayed row"})
    page = open_page(site.node, site.login_state, f"/sessions/?{search}", live=False)
    page.get_by_role("row").filter(has_text=application_name).get_by_role("link").click()

    expect(page.locator("h1 .pill")).to_have_text("Ended")
    expect(page.locator(".facts")).to_contain_text("verified")
    replayed = page.locator(".timeline .statement").filter(has=page.locator("pre.sql", has_text=statement))
    expect(replayed).to_have_count(1)
    expect(replayed.get_by_role("columnheader")).to_have_text(["n", "label"])
    for n in (1, 2, 3):
        expect(replayed.get_by_role("row").filter(has_text=f"replayed row {n}").get_by_role("cell")).to_have_text(
            [str(n), f"replayed row {n}"]
        )
