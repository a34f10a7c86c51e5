"""The reviewer's side of bench/reviewer_bench.py: a stdlib HTTP client and a real browser.

- `ReviewerClient`: one keep-alive `http.client` connection with the
  reviewer's cookies. It logs in through allauth's login form and posts
  forms the way the pages do: the csrftoken cookie, the page's
  csrfmiddlewaretoken field, X-CSRFToken, and an Origin header.
- `BrowserWatcher`: headless Chromium (Playwright driving /usr/bin/chromium),
  logged in through the same form; it opens a live session's page, whose
  htmx websocket extension connects /ws/sessions/<uuid>/watch/ itself, and
  counts what arrives on that websocket.
"""

import http.client
import http.cookies
import re
import time
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urlencode

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import WebSocket, sync_playwright

CHROMIUM = "/usr/bin/chromium"
LOGIN_PATH = "/accounts/login/"
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
EVENT_ROW = 'id="event-'
SKIPPED = re.compile(r"(\d+) events? came faster")


class WebError(RuntimeError):
    """A page answered unexpectedly, or the browser could not do its part."""


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: str


def form_token(html: str) -> str:
    """The csrfmiddlewaretoken of the first form on a page."""
    match = CSRF_FIELD.search(html)
    if match is None:
        raise WebError("the page has no csrfmiddlewaretoken field")
    return unescape(match.group(1))


class ReviewerClient:
    """A reviewer's browser reduced to the stdlib: one keep-alive HTTP connection, its cookies, CSRF."""

    def __init__(self, host: str, port: int) -> None:
        self.origin = f"http://{host}:{port}"
        self.cookies: dict[str, str] = {}
        self._connection = http.client.HTTPConnection(host, port, timeout=60)

    def close(self) -> None:
        self._connection.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post_form(self, path: str, fields: dict[str, str], token: str) -> Response:
        """POST a form as the page would: its csrfmiddlewaretoken field, the X-CSRFToken header, our Origin."""
        body = urlencode({**fields, "csrfmiddlewaretoken": token}).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-CSRFToken": self.cookies.get("csrftoken", ""),
            "Origin": self.origin,
            "Referer": self.origin + path,
        }
        return self.request("POST", path, body, headers)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Response:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
        try:
            return self._exchange(method, path, body, headers)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # The server closed the idle keep-alive connection; a browser would reconnect too.
            self._connection.close()
            return self._exchange(method, path, body, headers)

    def _exchange(self, method: str, path: str, body: bytes | None, headers: dict) -> Response:
        self._connection.request(method, path, body=body, headers=headers)
        reply = self._connection.getresponse()
        text = reply.read().decode("utf-8", "replace")
        self._keep_cookies(reply.headers.get_all("Set-Cookie") or [])
        return Response(reply.status, reply.headers, text)

    def _keep_cookies(self, lines: list[str]) -> None:
        for line in lines:
            jar = http.cookies.SimpleCookie()
            jar.load(line)
            for name, morsel in jar.items():
                if morsel.value:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)  # Django deletes a cookie by sending it empty

    def login(self, email: str, password: str) -> None:
        """Log in through allauth's login form; raises WebError unless a session cookie comes back."""
        page = self.get(LOGIN_PATH)
        if page.status != 200:
            raise WebError(f"GET {LOGIN_PATH} answered {page.status}")
        reply = self.post_form(LOGIN_PATH, {"login": email, "password": password}, form_token(page.body))
        if reply.status != 302 or "sessionid" not in self.cookies:
            raise WebError(f"logging in answered {reply.status} without a session: {reply.body[:300]}")


@dataclass
class WatchTally:
    """What one watch delivered on the live-watch websocket."""

    frames: int = 0
    events: int = 0  # timeline rows shown
    skipped: int = 0  # events the consumer reported as too fast to show
    bytes: int = 0
    first_frame_at: float | None = None  # time.monotonic()
    closed: list[str] = field(default_factory=list)


class BrowserWatcher:
    """Headless Chromium logged in as the reviewer; watches one live session at a time."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.tally = WatchTally()
        self._playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except PlaywrightError:
            self._playwright.stop()
            raise
        self.page = self.browser.new_page()
        self.page.on("websocket", self._on_websocket)

    def close(self) -> None:
        self.browser.close()
        self._playwright.stop()

    def login(self, email: str, password: str) -> None:
        """Log in through the login form, as a person would, then leave the dashboard (its feed is live too)."""
        self.page.goto(self.origin + LOGIN_PATH)
        self.page.fill('input[name="login"]', email)
        self.page.fill('input[name="password"]', password)
        self.page.click('form[action*="login"] button[type="submit"]')
        self.page.wait_for_url(self.origin + "/")
        self.idle()

    def idle(self) -> None:
        """A blank page: no websocket open."""
        self.page.goto("about:blank")

    def watch(self, session_id: str, timeout: float) -> WatchTally:
        """Open the session's page and wait for the watch websocket's first frame (what happened so far)."""
        self.tally = WatchTally()
        self.page.goto(f"{self.origin}/sessions/{session_id}/")
        deadline = time.monotonic() + timeout
        while self.tally.first_frame_at is None:
            if time.monotonic() > deadline or self.tally.closed:
                raise WebError(f"the watch websocket sent nothing within {timeout:g} s {self.tally.closed}")
            self.pump(0.02)
        return self.tally

    def pump(self, seconds: float) -> None:
        """Let the browser run and Playwright deliver its events (frames) for `seconds`."""
        self.page.wait_for_timeout(seconds * 1000)

    def _on_websocket(self, socket: WebSocket) -> None:
        if "/watch/" not in socket.url:
            return
        socket.on("framereceived", self._on_frame)
        socket.on("close", lambda closed: self.tally.closed.append(closed.url))

    def _on_frame(self, payload: str | bytes) -> None:
        text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
        tally = self.tally
        if tally.first_frame_at is None:
            tally.first_frame_at = time.monotonic()
        tally.frames += 1
        tally.bytes += len(text)
        tally.events += text.count(EVENT_ROW)
        tally.skipped += sum(int(number) for number in SKIPPED.findall(text))
