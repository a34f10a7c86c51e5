"""File transfers over SSH (sftp, legacy scp, rsync), recorded as file operations rather than terminal data.

The relay hands a `TransferTap` every byte of one file-transfer channel, in
the order it relays them and in whatever chunks arrive. The tap frames the
protocol itself and calls `sink(kind, data)`:

- "file": one per file operation once it completes, {"ch", "op", "path", …,
  "status"}. An sftp handle's READs and WRITEs are grouped into one event
  when the handle is closed (`SftpStream`); scp records one per file.
- "transfer_error": once, when a channel's stream stops making sense
  (framing lost, not the protocol expected). Parsing stops there; bytes are
  still counted.
- "transfer": the summary, once, at `close()`.

A file's sha256 is of its content in offset order. OpenSSH pipelines many
READs and WRITEs, so replies may complete out of order: `FileDigest` keeps a
bounded reorder buffer and, when access is not sequential or the buffer
would overflow, says so ("sha256": null, "sequential": false) rather than
record a wrong hash. Nothing of a file's content is recorded unless the
connection asks for it (keep_content), and then only its first
CONTENT_LIMIT bytes.

No I/O and no Django: the tap only looks at bytes, and never raises into the
relay.
"""

import logging
import shlex
from collections.abc import Callable

from .scp_stream import ScpStream, scp_command
from .sftp_stream import SftpStream
from .transfer_records import ChannelBudget, FramingError, text

logger = logging.getLogger(__name__)

EventSink = Callable[[str, dict], None]


def rsync_fields(command: str | None) -> dict:
    """An rsync server command's direction ("download" with --sender, else "upload") and paths."""
    try:
        argv = shlex.split(command or "")
    except ValueError:
        argv = []
    paths = argv[argv.index(".") + 1 :] if "." in argv else []
    return {"direction": "download" if "--sender" in argv else "upload", "paths": [text(p.encode()) for p in paths]}


def transfer_kind(kind: str, subsystem: str | None, command: str | None) -> str:
    """The protocol of a channel that moves files: "sftp", "scp" or "rsync"; "" for any other channel."""
    if kind == "subsystem" and subsystem == "sftp":
        return "sftp"
    if kind != "exec" or not command:
        return ""
    try:
        argv = shlex.split(command)
    except ValueError:
        return ""
    program = argv[0].rsplit("/", 1)[-1] if argv else ""
    if program == "scp" and scp_command(command)[0] is not None:
        return "scp"
    if program == "rsync" and "--server" in argv:
        return "rsync"
    if program == "sftp-server":
        return "sftp"
    return ""


class TransferTap:
    """Watches one file-transfer channel's bytes and records its file operations and a summary.

    `kind` is what `transfer_kind` returned; `command` the exec command (scp
    and rsync take paths and direction from it). Call `from_client` and
    `from_host` in the order the relay passes the bytes on, and `close` once
    when the channel ends (further calls are ignored).
    """

    def __init__(
        self, kind: str, channel: int, sink: EventSink, keep_content: bool = False, command: str | None = None
    ) -> None:
        self.kind = kind
        self.channel = channel
        self.sink = sink
        self.keep_content = keep_content
        self.command = command
        self.bytes_up = 0
        self.bytes_down = 0
        self.files = 0
        self.skipped_packets = 0
        self.failed = False
        self.closed = False
        self.budget = ChannelBudget()
        self.stream: SftpStream | ScpStream | None = None
        if kind == "sftp":
            self.stream = SftpStream(self)
        elif kind == "scp":
            self.stream = ScpStream(self, command)

    def from_client(self, data: bytes) -> None:
        """Bytes the client sent towards the host."""
        self.bytes_up += len(data)
        if self.stream is not None and not self.failed and not self.closed:
            self._parse(self.stream.from_client, data, "up")

    def from_host(self, data: bytes, datatype: int | None = None) -> None:
        """Bytes the host sent towards the client; stderr (datatype 1) is counted but not parsed."""
        self.bytes_down += len(data)
        if self.stream is not None and datatype is None and not self.failed and not self.closed:
            self._parse(self.stream.from_host, data, "down")

    def close(self) -> None:
        """The channel ended: unfinished files are recorded, then the "transfer" summary, once."""
        if self.closed:
            return
        if self.stream is not None:
            self._parse(lambda _data: self.stream.close(), b"", "close")
        self.closed = True
        summary = {
            "protocol": self.kind,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "files": self.files,
            "skipped_packets": self.skipped_packets,
        }
        if isinstance(self.stream, ScpStream):
            summary["direction"] = "upload" if self.stream.mode == "t" else "download"
        if self.kind == "rsync":
            summary.update(rsync_fields(self.command))
        self.record("transfer", summary)

    def record(self, kind: str, data: dict) -> None:
        """Send one event to the sink, with this channel's number."""
        if kind == "file" and data.get("op") in ("read", "write") and data.get("status") == "ok":
            self.files += 1
        self.sink(kind, {"ch": self.channel, **data})

    def _parse(self, feed: Callable[[bytes], None], data: bytes, direction: str) -> None:
        try:
            feed(data)
        except FramingError as exc:
            self._fail(direction, str(exc))
        except Exception as exc:  # noqa: BLE001 - a parser bug must not break the session it only watches
            logger.exception("file transfer tap on channel %s failed", self.channel)
            self._fail(direction, f"internal error: {type(exc).__name__}")

    def _fail(self, direction: str, error: str) -> None:
        if self.failed:
            return
        self.failed = True
        offset = self.bytes_up if direction == "up" else self.bytes_down
        self.record("transfer_error", {"protocol": self.kind, "direction": direction, "error": error, "at": offset})
