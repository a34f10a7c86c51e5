"""The legacy scp side of the file-transfer tap: control lines, acknowledgements and file data.

See connections.protocols.ssh.file_transfer for the events it records.
"""

import enum
import posixpath
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .transfer_records import MAX_BACKLOG, MAX_LINE, MAX_MESSAGE, FileDigest, FramingError, text

if TYPE_CHECKING:
    from .file_transfer import TransferTap


def scp_command(command: str | None) -> tuple[str | None, set[str], list[str]]:
    """The remote side of legacy scp: ("t" sink/upload | "f" source/download | None, flags, paths)."""
    try:
        argv = shlex.split(command or "")
    except ValueError:
        return None, set(), []
    mode, flags, paths, options_done = None, set(), [], False
    for arg in argv[1:]:
        if options_done or not arg.startswith("-") or arg == "-":
            paths.append(arg)
        elif arg == "--":
            options_done = True
        else:
            flags.update(arg[1:])
    if "t" in flags:
        mode = "t"
    elif "f" in flags:
        mode = "f"
    return mode, flags, paths


class ScpState(enum.Enum):
    LINE = "line"  # a control line (T, C, D, E) or an error line is next
    DATA = "data"  # file bytes
    DATA_END = "data_end"  # the source's \0 (or error line) after a file's bytes
    DONE = "done"  # a fatal error ended the transfer


@dataclass
class ScpFile:
    """The file whose C line was sent last."""

    path: str
    name: str
    mode: str
    size: int
    digest: FileDigest
    mtime: int | None = None
    error: dict | None = None


class ScpStream:
    """Legacy scp (the rcp protocol): the source sends control lines and file data, the sink acknowledges.

    With "scp -t" (upload) the client is the source; with "scp -f"
    (download) the host is. Each line and each file's data waits for the
    sink's \\0 (or \\x01/\\x02 + message), so the two directions advance in
    lockstep; bytes that arrive while an acknowledgement is awaited are held
    (bounded) until it comes. One "file" event per file (op "write" for an
    upload, "read" for a download) and, on upload, one "mkdir" per directory.
    """

    def __init__(self, tap: "TransferTap", command: str | None) -> None:
        self.tap = tap
        self.mode, self.flags, self.paths = scp_command(command)
        self.target_is_dir = bool({"d", "r"} & self.flags) or any(
            path in ("", ".", "~") or path.endswith("/") for path in self.paths[:1]
        )
        self.state = ScpState.LINE
        self.waiting: str | None = "start"  # what the next acknowledgement answers
        self.source = bytearray()
        self.acks = bytearray()
        self.dirs: list[str] = []
        self.pending_dir: tuple[str, str] | None = None
        self.mtime: int | None = None
        self.file: ScpFile | None = None

    @property
    def op(self) -> str:
        return "write" if self.mode == "t" else "read"

    def from_client(self, data: bytes) -> None:
        self.mode = self.mode or "f"  # the sink speaks first: a client that does is downloading
        self._feed(data, client=True)

    def from_host(self, data: bytes) -> None:
        self.mode = self.mode or "t"
        self._feed(data, client=False)

    def close(self) -> None:
        """The channel ended: a file cut off mid-way records what was seen, as "incomplete"."""
        if self.file is not None:
            self._record_file({"status": "incomplete"})

    def _feed(self, data: bytes, client: bool) -> None:
        if self.state is ScpState.DONE:
            return
        if client == (self.mode == "t"):
            self.source += data
            self._run()
            if len(self.source) > MAX_BACKLOG:
                raise FramingError("scp source sent more than expected before its acknowledgement")
        else:
            self.acks += data
            self._read_acks()

    def _read_acks(self) -> None:
        while self.acks and self.state is not ScpState.DONE:
            code = self.acks[0]
            if code == 0:
                del self.acks[:1]
                self._ack(None, fatal=False)
            elif code in (1, 2):
                message = self._take_line(self.acks)
                if message is None:
                    return
                self._ack(text(message[1:], MAX_MESSAGE), fatal=code == 2)
            else:
                raise FramingError(f"scp acknowledgement starts with byte {code}")
            self._run()

    def _take_line(self, buf: bytearray) -> bytes | None:
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > MAX_LINE:
                raise FramingError("scp line too long")
            return None
        line = bytes(buf[:end])
        del buf[: end + 1]
        return line

    def _run(self) -> None:
        """Consume the source's bytes until an acknowledgement is needed or they run out."""
        while self.waiting is None and self.source and self.state is not ScpState.DONE:
            if self.state is ScpState.DATA:
                size = min(self.file.size - self.file.digest.bytes, len(self.source))
                self.file.digest.add(self.file.digest.bytes, bytes(self.source[:size]))
                del self.source[:size]
                if self.file.digest.bytes == self.file.size:
                    self.state = ScpState.DATA_END
            elif self.state is ScpState.DATA_END:
                if not self._data_end():
                    return
            else:
                line = self._take_line(self.source)
                if line is None:
                    return
                self._control(line)

    def _data_end(self) -> bool:
        """The source's verdict on the file it just sent: \\0, or an error line (it could not read it all)."""
        code = self.source[0]
        if code == 0:
            del self.source[:1]
        elif code in (1, 2):
            line = self._take_line(self.source)
            if line is None:
                return False
            self.file.error = {"status": text(line[1:], MAX_MESSAGE)}
        else:
            raise FramingError(f"scp file data ends with byte {code}, not \\0")
        self.state = ScpState.LINE
        self.waiting = "data"
        return True

    def _control(self, line: bytes) -> None:
        kind, rest = line[:1], line[1:]
        if kind in (b"\x01", b"\x02"):  # the source could not send something; no acknowledgement follows
            where = self.dirs[-1] if self.dirs else (self.paths[0] if self.paths else "")
            self._file({"op": self.op, "path": where, "status": text(rest, MAX_MESSAGE)})
            if kind == b"\x02":
                self.state = ScpState.DONE
        elif kind == b"T":
            fields = rest.split()
            if len(fields) != 4 or not all(part.isdigit() and len(part) <= 20 for part in fields):
                raise FramingError("bad scp T line")
            self.mtime, self.waiting = int(fields[0]), "T"
        elif kind in (b"C", b"D"):
            self._entry(kind, rest)
        elif kind == b"E" and not rest:
            self.waiting = "E"
        else:
            raise FramingError(f"unexpected scp control line {text(line[:16], 16)!r}")

    def _entry(self, kind: bytes, rest: bytes) -> None:
        parts = rest.split(b" ", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(parts[1]) > 20 or not parts[2]:
            raise FramingError(f"bad scp {kind.decode()} line")
        mode, name = parts[0].decode(), text(parts[2])
        path = self._path(name)
        if kind == b"C":
            digest = FileDigest(self.tap.budget, self.tap.keep_content)
            self.file = ScpFile(path, name, mode, int(parts[1]), digest, self.mtime)
            self.waiting = "C"
        else:
            self.pending_dir, self.waiting = (path, mode), "D"
        self.mtime = None

    def _path(self, name: str) -> str:
        """Where an entry named in a C/D line lives on the host, as best the command tells."""
        if self.dirs:
            return posixpath.join(self.dirs[-1], name)
        if self.mode == "t":
            target = self.paths[0] if self.paths else ""
            return posixpath.join(target, name) if self.target_is_dir and target else target or name
        for path in self.paths:
            if posixpath.basename(path.rstrip("/")) == name:
                return path
        return posixpath.join(posixpath.dirname(self.paths[0]), name) if self.paths else name

    def _ack(self, error: str | None, fatal: bool) -> None:
        waiting, self.waiting = self.waiting, None
        status = {"status": error} if error is not None else {"status": "ok"}
        if waiting == "C" and error is None:
            self.state = ScpState.DATA if self.file.size else ScpState.DATA_END
        elif waiting == "C":  # refused before any data was sent
            self._record_file(status, with_data=False)
        elif waiting == "data":
            self._record_file(self.file.error or status)
        elif waiting == "D" and self.pending_dir is not None:
            (path, mode), self.pending_dir = self.pending_dir, None
            if error is None:
                self.dirs.append(path)
            if self.mode == "t":
                self._file({"op": "mkdir", "path": path, "mode": mode, **status})
        elif waiting == "E" and self.dirs:
            self.dirs.pop()
        elif waiting in (None, "start") and error is not None:
            self._file({"op": self.op, "path": self.paths[0] if self.paths else "", **status})
        if fatal:
            self.state = ScpState.DONE

    def _record_file(self, status: dict, with_data: bool = True) -> None:
        file, self.file = self.file, None
        event = {"op": self.op, "path": file.path, "name": file.name, "mode": file.mode}
        if file.mtime is not None:
            event["mtime"] = file.mtime
        self._file({**event, **status, **(file.digest.fields() if with_data else {})})

    def _file(self, event: dict) -> None:
        self.tap.record("file", event)
