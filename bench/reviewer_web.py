"""The reviewer's side of bench/reviewer_bench.py: a stdlib HTTP client and a real browser.

- `ReviewerClient`: one keep-alive `http.client` connection with the
  reviewer's cookies. It logs in through allauth's login form and posts
  forms the way the pages do: the csrftoken cookie, the page's
  csrfmiddlewaretoken field, X-CSRFToken, and an Origin header.
- `BrowserWatcher`: headless Chromium (Playwright driving /usr/bin/chromium),
  logged in through the same form; it opens a live session's page, whose
  htmx websocket extension connects /ws/sessions/<uuid>/watch/ itself, and
  counts what arrives on that websocket.
- `SocketWatcher`: the same websocket without a browser, reading and
  counting frames in a thread: the gateway's own cost of a watcher.
"""

import base64
import contextlib
import http.client
import http.cookies
import os
import re
import socket
import struct
import threading
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

    def count(self, text: str) -> None:
        """Count one frame of timeline rows."""
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
        self.frames += 1
        self.bytes += len(text)
        self.events += text.count(EVENT_ROW)
        self.skipped += sum(int(number) for number in SKIPPED.findall(text))


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
        self.tally.count(payload if isinstance(payload, str) else payload.decode("utf-8", "replace"))


class SocketWatcher:
    """A watcher without a browser: the reviewer's cookie on a plain websocket to /ws/sessions/<uuid>/watch/.

    It reads and counts every frame in a thread (answering pings), so what it
    adds to a run is the gateway's own cost of watching, not a browser's.
    """

    def __init__(self, host: str, port: int, cookies: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        self.tally = WatchTally()
        self._socket: socket.socket | None = None
        self._reader: threading.Thread | None = None

    def watch(self, session_id: str, timeout: float) -> WatchTally:
        """Connect, then wait for the first frame (what happened so far)."""
        self.tally = WatchTally()
        self._socket = socket.create_connection((self.host, self.port), timeout=timeout)
        self._handshake(f"/ws/sessions/{session_id}/watch/")
        self._socket.settimeout(None)
        self._reader = threading.Thread(target=self._read_frames, args=(self._socket,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while self.tally.first_frame_at is None:
            if time.monotonic() > deadline or self.tally.closed:
                raise WebError(f"the watch websocket sent nothing within {timeout:g} s {self.tally.closed}")
            time.sleep(0.02)
        return self.tally

    def pump(self, seconds: float) -> None:
        time.sleep(seconds)

    def idle(self) -> None:
        """Close the websocket (the reader thread ends with it)."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
            self._socket = None
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None

    close = idle

    def _handshake(self, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{self.host}:{self.port}\r\n"
            f"Cookie: {self.cookie}\r\n\r\n"
        )
        self._socket.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._socket.recv(4096)
            if not chunk:
                raise WebError("the gateway closed the websocket handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise WebError(f"the websocket handshake answered {head.splitlines()[0]!r}")

    def _read_frames(self, sock: socket.socket) -> None:
        stream = sock.makefile("rb")
        try:
            while True:
                opcode, payload = _read_frame(stream)
                if opcode == 0x8:  # close
                    self.tally.closed.append("closed by the gateway")
                    return
                if opcode == 0x9:  # ping: answer, or the server drops us
                    sock.sendall(_masked_frame(0xA, payload))
                elif opcode in (0x1, 0x2):
                    self.tally.count(payload.decode("utf-8", "replace"))
        except (OSError, ValueError, EOFError):
            return  # closed by idle()


def _read_frame(stream) -> tuple[int, bytes]:
    """One unfragmented server frame: (opcode, payload). Server frames are not masked."""
    head = _read_exactly(stream, 2)
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", _read_exactly(stream, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", _read_exactly(stream, 8))[0]
    return opcode, _read_exactly(stream, length)


def _read_exactly(stream, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) < size:
        raise EOFError("the websocket closed")
    return data


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask), for payloads under 126 bytes (a pong)."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked
