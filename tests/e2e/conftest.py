"""Headless Chromium against real gateway nodes: the reviewer's browser, login, and the node's web set-up.

Playwright's sync API drives Debian's /usr/bin/chromium (installed by
`.ci/run`; Playwright's own browser downloads are never used). A reviewer
is a real Django user made on the node with `manage.py shell`, logs in
once through the allauth form, and each test opens pages in a fresh
browser context carrying that login (its storage state).
"""

import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from connections.policy.policy_file import PolicyEntry, policy_file_yaml
from connections.policy.rules import GuardrailMatch, GuardrailRule, PolicySpec
from tests.protocols.nodes import add_connection, gateway_psql_env, psql_command, unique_name
from tests.support.background import in_background
from tests.support.gateway_process import GatewayProcess
from tests.support.pg_cluster import SUPERUSER, PgCluster

CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 15_000  # every wait in the browser: generous, never a timing assertion
CLIENT_TIMEOUT = 60.0
REVIEW_RULE = "schema-changes"

# Before any page script: count the websockets htmx's ws extension opened, so a test waits for the live feed.
_COUNT_WS_OPENS = """
window.__wsOpened = 0;
document.addEventListener("htmx:wsOpen", function () { window.__wsOpened += 1; });
"""

# Runs inside `manage.py shell`: a person who logs in with email and password and may review and watch.
# allauth (email login, verification "none") finds the person by User.email: no EmailAddress row is needed.
_REVIEWER_SCRIPT = """
import os
from django.contrib.auth.models import User
from guardian.shortcuts import assign_perm
from connections.models import Connection
user = User.objects.create_user(
    os.environ["GATEHOUSE_TEST_USERNAME"], os.environ["GATEHOUSE_TEST_EMAIL"], os.environ["GATEHOUSE_TEST_PASSWORD"]
)
for name in os.environ["GATEHOUSE_TEST_CONNECTIONS"].split(","):
    connection = Connection.objects.get(name=name)
    assign_perm("review", user, connection)
    assign_perm("view_sessions", user, connection)
"""


@dataclass(frozen=True)
class Reviewer:
    """A person with `review` and `view_sessions` on some connections, and the password to log in with."""

    username: str
    email: str
    password: str


# --- the node's web side ---------------------------------------------------------


def add_reviewer(node: GatewayProcess, *connections: str) -> Reviewer:
    """A new person on the node with `review` and `view_sessions` on `connections`."""
    username = unique_name("reviewer")
    reviewer = Reviewer(username, f"{username}@example.com", secrets.token_urlsafe(18))
    env = {
        "GATEHOUSE_TEST_USERNAME": reviewer.username,
        "GATEHOUSE_TEST_EMAIL": reviewer.email,
        "GATEHOUSE_TEST_PASSWORD": reviewer.password,
        "GATEHOUSE_TEST_CONNECTIONS": ",".join(connections),
    }
    node.manage("shell", "-c", _REVIEWER_SCRIPT, env=env, check=True)
    return reviewer


def add_reviewed_connection(node: GatewayProcess, cluster: PgCluster, policy_dir: Path) -> str:
    """A connection to the app database whose CREATE statements wait for a review; the node's bot may use it."""
    connection = unique_name("reviewed")
    add_connection(node, connection, cluster, SUPERUSER, password=cluster.superuser_password)
    node.manage("agents", "grant", node.agent_name, connection, check=True)
    rule = GuardrailRule(REVIEW_RULE, "review", GuardrailMatch(kind=("CREATE",)))
    spec = PolicySpec(name=unique_name("reviewed"), guardrails=(rule,))
    policy_file = policy_dir / f"{connection}.yaml"
    policy_file.write_text(policy_file_yaml([PolicyEntry(spec, "", (connection,))]))
    node.manage("policies", "apply", str(policy_file), check=True)
    return connection


def base_url(node: GatewayProcess) -> str:
    return f"http://127.0.0.1:{node.http_port}"


# --- the bot's side --------------------------------------------------------------


def bot_psql(
    node: GatewayProcess, connection: str, *statements: str, application_name: str | None = None
) -> Callable[[], subprocess.CompletedProcess[str]]:
    """The real psql of the node's bot running `statements` (one -c each) in the background; call it to join."""
    application_name = application_name or unique_name("e2e-psql")
    args = [arg for statement in statements for arg in ("-c", statement)]
    command = psql_command(node.dsn(dbname=connection, password=""), "-A", "-t", *args)
    env = gateway_psql_env(node, application_name)
    return in_background(
        lambda: subprocess.run(command, capture_output=True, text=True, env=env, timeout=CLIENT_TIMEOUT),
        CLIENT_TIMEOUT + 10,
    )


# --- the browser -----------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    """Playwright's sync driver, for one test module at a time.

    While it runs, its event loop counts as running in the test thread, so
    Django's ORM and async_to_sync would refuse to work there: it must stop
    before the suite's other modules run.
    """
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless Debian Chromium; missing, it fails the run loudly (CI must not skip these tests)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the reviewer pages' browser tests need Debian's chromium; .ci/run installs it"
        )
    expect.set_options(timeout=WAIT_MS)
    browser = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
    yield browser
    browser.close()


def log_in(browser: Browser, node: GatewayProcess, reviewer: Reviewer) -> dict:
    """Log in through the real allauth form on `node`; the browser storage state that carries the login."""
    context = browser.new_context(base_url=base_url(node))
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto("/")  # every page needs a login: this lands on the form
        expect(page).to_have_url(f"{base_url(node)}/accounts/login/?next=/")
        page.get_by_label("Email").fill(reviewer.email)
        page.get_by_label("Password").fill(reviewer.password)
        page.get_by_role("button", name="Sign In").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.get_by_text(reviewer.email)).to_be_visible()  # the user menu
        return context.storage_state()
    finally:
        context.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Opens a page of a node as a logged-in reviewer, in a fresh context, waiting for its live websocket.

    open_page(node, login_state, path, live=True): with `live`, it returns
    once htmx's ws extension has opened the page's websocket (the dashboard's
    feed, a session's live watch), so nothing announced after is missed.
    """
    contexts: list[BrowserContext] = []

    def open_(node: GatewayProcess, login_state: dict, path: str, live: bool = True) -> Page:
        context = browser.new_context(base_url=base_url(node), storage_state=login_state)
        contexts.append(context)
        context.add_init_script(_COUNT_WS_OPENS)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(path)
        if live:
            page.wait_for_function("window.__wsOpened > 0")
        return page

    yield open_
    for context in contexts:
        context.close()


def mark_page(page: Page) -> None:
    """Set a marker in the page's window: if it is still there later, the page was not reloaded."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded or left"
