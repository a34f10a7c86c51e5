"""What the file-transfer taps share: limits, status texts and the per-file digest (sha256 in offset order).

See connections.protocols.ssh.file_transfer for how the taps fit together.
"""

import base64
import hashlib
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

EventSink = Callable[[str, dict], None]

MAX_PACKET = 1 << 20  # sftp packets up to this are parsed (OpenSSH itself stops at 256 KiB)
MAX_LENGTH = 64 << 20  # a length above this is not sftp framing at all: parsing stops
SKIPPED_HEAD = 512  # what is read of an oversized packet, to tell which file it damages
MAX_REQUESTS = 4096  # outstanding sftp requests tracked per channel
MAX_HANDLES = 1024  # open sftp handles tracked per channel
REORDER_LIMIT = 4 << 20  # out-of-order file bytes held per channel to hash them in offset order
CONTENT_LIMIT = 1 << 20  # file content kept per file when the connection records content
CONTENT_BUDGET = 8 << 20  # content held per channel for files not yet recorded (many open at once)
MAX_NAMES = 100  # names recorded per directory listing
MAX_PATH = 4096  # characters of a path kept in an event
MAX_MESSAGE = 256  # characters of a status message kept in an event
MAX_LINE = 8192  # an scp control or error line
MAX_BACKLOG = 64 << 10  # scp bytes that may arrive while the other side's acknowledgement is awaited


class Malformed(ValueError):
    """A packet or line that does not parse; it is skipped and counted."""


class FramingError(ValueError):
    """The stream no longer splits into messages; parsing of the channel stops."""


def text(raw: bytes, limit: int = MAX_PATH) -> str:
    """Wire bytes as an event string: undecodable bytes shown as \\xNN, capped at `limit` characters."""
    decoded = raw[: limit * 4].decode("utf-8", "backslashreplace")
    return decoded if len(decoded) <= limit else decoded[: limit - 1] + "…"


class ChannelBudget:
    """What one channel's open files may hold at once: out-of-order bytes, and kept content not yet recorded."""

    def __init__(self, held: int = REORDER_LIMIT, content: int = CONTENT_BUDGET) -> None:
        self.held = held
        self.content = content


class FileDigest:
    """Bytes of one file in one direction: count, sha256 in offset order, optionally the first bytes."""

    def __init__(self, budget: ChannelBudget, keep_content: bool) -> None:
        self.budget = budget
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.next_offset = 0
        self.held: dict[int, bytes] = {}
        self.sequential = True
        self.content = bytearray() if keep_content else None
        self.content_truncated = False

    def add(self, offset: int, data: bytes) -> None:
        """File bytes at `offset`: hashed now if they are next, held if later, else the hash is given up."""
        self.bytes += len(data)
        if not self.sequential or not data:
            return
        if offset == self.next_offset:
            self._take(data)
            while self.next_offset in self.held:
                chunk = self.held.pop(self.next_offset)
                self.budget.held += len(chunk)
                self._take(chunk)
        elif offset > self.next_offset and offset not in self.held and len(data) <= self.budget.held:
            self.held[offset] = data
            self.budget.held -= len(data)
        else:
            self.give_up()

    def lost(self, size: int) -> None:
        """Bytes that passed without being seen (an oversized or damaged packet): counted, hash given up."""
        self.bytes += max(size, 0)
        self.give_up()

    def give_up(self) -> None:
        """Access was not sequential: no hash, and whatever is held is released."""
        self.sequential = False
        self.budget.held += sum(len(chunk) for chunk in self.held.values())
        self.held.clear()

    def fields(self) -> dict:
        """The event fields: bytes, sha256 (None unless sequential), sequential, and content if kept.

        Called once, when the file is recorded: the content it held goes back to the channel's budget.
        """
        if self.held:  # a hole was never filled
            self.give_up()
        result = {
            "bytes": self.bytes,
            "sha256": self.sha.hexdigest() if self.sequential else None,
            "sequential": self.sequential,
        }
        if self.content is not None:
            result["content"] = base64.b64encode(self.content).decode("ascii")
            result["content_truncated"] = self.content_truncated or not self.sequential
            self.budget.content += len(self.content)
        return result

    def _take(self, data: bytes) -> None:
        self.sha.update(data)
        self.next_offset += len(data)
        if self.content is not None:
            room = max(min(CONTENT_LIMIT - len(self.content), self.budget.content), 0)
            if len(data) > room:
                self.content_truncated = True
            self.content += data[:room]
            self.budget.content -= min(len(data), room)
