"""The sftp side of the file-transfer tap: packet framing, requests, handles and their file events.

See connections.protocols.ssh.file_transfer for the events it records.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .transfer_records import (
    MAX_HANDLES,
    MAX_LENGTH,
    MAX_MESSAGE,
    MAX_NAMES,
    MAX_PACKET,
    MAX_REQUESTS,
    SKIPPED_HEAD,
    FileDigest,
    FramingError,
    Malformed,
    text,
)

if TYPE_CHECKING:
    from .file_transfer import TransferTap


# sftp packet types (draft-ietf-secsh-filexfer-02, version 3)
INIT, VERSION, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = range(11, 21)
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
EXTENDED, EXTENDED_REPLY = 200, 201
FX_OK, FX_EOF = 0, 1
STATUS_TEXT = {
    0: "ok",
    1: "eof",
    2: "no such file",
    3: "permission denied",
    4: "failure",
    5: "bad message",
    6: "no connection",
    7: "connection lost",
    8: "operation unsupported",
}
OPEN_FLAGS = ((0x01, "read"), (0x02, "write"), (0x04, "append"), (0x08, "creat"), (0x10, "trunc"), (0x20, "excl"))
OPEN_TRUNC = 0x10
# Extensions that only ask something: no file operation to record.
QUERY_EXTENSIONS = {
    b"statvfs@openssh.com",
    b"fstatvfs@openssh.com",
    b"limits@openssh.com",
    b"expand-path@openssh.com",
    b"home-directory",
    b"users-groups-by-id@openssh.com",
    b"fsync@openssh.com",
}


def status_fields(code: int, message: str = "") -> dict:
    """{"status": "ok"} or the sftp error ("no such file", …) plus the server's own message."""
    if code == FX_OK:
        return {"status": "ok"}
    fields = {"status": STATUS_TEXT.get(code, f"error {code}")}
    if message:
        fields["message"] = message
    return fields


class Cursor:
    """Reads sftp's wire types from one packet body; Malformed when the body runs out."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise Malformed("packet shorter than its fields")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def string(self) -> bytes:
        return self.take(self.u32())

    def path(self) -> str:
        return text(self.string())

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def attrs(self) -> dict:
        """An ATTRS block as event fields (mode as four octal digits)."""
        flags, result = self.u32(), {}
        if flags & 0x1:
            result["size"] = self.u64()
        if flags & 0x2:
            result["uid"], result["gid"] = self.u32(), self.u32()
        if flags & 0x4:
            result["mode"] = format(self.u32() & 0o7777, "04o")
        if flags & 0x8:
            result["atime"], result["mtime"] = self.u32(), self.u32()
        if flags & 0x80000000:
            for _ in range(self.u32()):
                self.string(), self.string()
        return result


class PacketFramer:
    """Cuts one direction of an sftp stream into packet bodies (uint32 length, then the body)."""

    def __init__(self, on_packet: Callable[[bytes], None], on_oversized: Callable[[bytes, int], None]) -> None:
        self.on_packet = on_packet
        self.on_oversized = on_oversized
        self.buf = bytearray()
        self.skip = 0  # bytes of an oversized packet still to pass over

    def feed(self, data: bytes) -> None:
        if self.skip:
            passed = min(self.skip, len(data))
            self.skip -= passed
            data = memoryview(data)[passed:]
        self.buf += data
        while len(self.buf) >= 4:
            length = int.from_bytes(self.buf[:4], "big")
            if length == 0 or length > MAX_LENGTH:
                raise FramingError(f"sftp packet length {length}")
            if length <= MAX_PACKET:
                if len(self.buf) < 4 + length:
                    return
                body = bytes(self.buf[4 : 4 + length])
                del self.buf[: 4 + length]
                self.on_packet(body)
                continue
            buffered = len(self.buf) - 4
            if buffered < SKIPPED_HEAD:
                return
            self.on_oversized(bytes(self.buf[4 : 4 + SKIPPED_HEAD]), length)
            taken = min(length, buffered)
            del self.buf[: 4 + taken]
            self.skip = length - taken


@dataclass
class Request:
    """An sftp request awaiting its reply: what to record when it comes."""

    op: str
    path: str = ""
    to: str | None = None
    handle: bytes = b""
    offset: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class OpenHandle:
    """An open sftp file or directory: what happened through it until it is closed."""

    path: str
    is_dir: bool = False
    flags: int = 0
    mode: str | None = None
    reads: FileDigest | None = None
    writes: FileDigest | None = None
    copied: bool = False  # source or target of a server-side copy-data
    error: dict | None = None  # the first failed READ/WRITE/READDIR
    entries: int = 0
    names: list = field(default_factory=list)


class SftpStream:
    """sftp (version 3 and OpenSSH's extensions): requests from the client, replies from the server.

    Request ids map to requests and handles to paths. Operations on a path
    (remove, mkdir, rmdir, rename, setstat, symlink, hardlink, copy, stat)
    record one event at their STATUS reply. A file handle records at its
    CLOSE: op "read" and/or "write" with bytes and sha256 (one event each),
    or "open" when neither happened; an OPEN that fails records op "open".
    A directory handle records one "list" event.
    """

    def __init__(self, tap: "TransferTap") -> None:
        self.tap = tap
        self.up = PacketFramer(self._request_packet, lambda head, size: self._damaged(True, head, size))
        self.down = PacketFramer(self._reply_packet, lambda head, size: self._damaged(False, head, size))
        self.requests: dict[int, Request] = {}
        self.handles: dict[bytes, OpenHandle] = {}
        self.initialized = False
        self.versioned = False
        self.request_handlers = {
            OPEN: self._open,
            CLOSE: self._close,
            READ: self._read,
            WRITE: self._write,
            LSTAT: self._stat,
            STAT: self._stat,
            SETSTAT: self._setstat,
            FSETSTAT: self._fsetstat,
            OPENDIR: self._opendir,
            READDIR: self._readdir,
            REMOVE: lambda rid, cur: self._track(rid, Request("remove", cur.path())),
            RMDIR: lambda rid, cur: self._track(rid, Request("rmdir", cur.path())),
            MKDIR: self._mkdir,
            RENAME: self._rename,
            SYMLINK: self._symlink,
            EXTENDED: self._extended,
            FSTAT: lambda rid, cur: None,  # queries: nothing to record
            REALPATH: lambda rid, cur: None,
            READLINK: lambda rid, cur: None,
        }

    def from_client(self, data: bytes) -> None:
        self.up.feed(data)

    def from_host(self, data: bytes) -> None:
        self.down.feed(data)

    def close(self) -> None:
        """The channel ended: handles never closed record what they saw, as "incomplete"."""
        for handle in list(self.handles.values()):
            self._record_handle(handle, {"status": "incomplete"})
        self.handles.clear()
        self.requests.clear()

    # --- framing -------------------------------------------------------------------

    def _request_packet(self, body: bytes) -> None:
        cur = Cursor(body)
        try:
            ptype = cur.u8()
            if not self.initialized:
                if ptype != INIT:
                    raise FramingError(f"sftp stream starts with packet type {ptype}, not INIT")
                self.initialized = True
                return
            handler = self.request_handlers.get(ptype)
            if handler is None:
                raise Malformed(f"unknown sftp request type {ptype}")
            handler(cur.u32(), cur)
        except Malformed:
            self._damaged(True, body, len(body))

    def _reply_packet(self, body: bytes) -> None:
        cur = Cursor(body)
        try:
            ptype = cur.u8()
            if not self.versioned:
                if ptype != VERSION:
                    raise FramingError(f"sftp server starts with packet type {ptype}, not VERSION")
                version = cur.u32()
                if version > 3:  # later versions change OPEN, RENAME and ATTRS: better no record than a wrong one
                    raise FramingError(f"sftp version {version} is not parsed (3 is)")
                self.versioned = True
                return
            rid = cur.u32()
            request = self.requests.get(rid)
            if request is not None:
                self._reply(ptype, request, cur)
                self.requests.pop(rid, None)
        except Malformed:
            self._damaged(False, body, len(body))

    def _damaged(self, from_client: bool, head: bytes, size: int) -> None:
        """A packet skipped as oversized or malformed: counted, and a file it carried data for loses its hash."""
        self.tap.skipped_packets += 1
        cur = Cursor(head)
        try:
            ptype, rid = cur.u8(), cur.u32()
            if from_client and ptype == WRITE:
                handle = self.handles.get(cur.string())
                if handle is not None and not handle.is_dir:
                    handle.writes = handle.writes or self._digest()
                    handle.writes.lost(size - (cur.pos + 12))
            elif not from_client:
                request = self.requests.pop(rid, None)
                handle = self.handles.get(request.handle) if request is not None else None
                if request is not None and request.op == "read" and handle is not None and handle.reads:
                    handle.reads.lost(size - 9)
        except Malformed:
            return

    def _track(self, rid: int, request: Request) -> bool:
        if len(self.requests) >= MAX_REQUESTS and rid not in self.requests:
            return False
        self.requests[rid] = request
        return True

    def _digest(self) -> FileDigest:
        return FileDigest(self.tap.budget, self.tap.keep_content)

    # --- requests (client → server) ------------------------------------------------------

    def _open(self, rid: int, cur: Cursor) -> None:
        path, flags = cur.path(), cur.u32()
        mode = cur.attrs().get("mode")
        self._track(rid, Request("open", path, extra={"flags": flags, "mode": mode}))

    def _close(self, rid: int, cur: Cursor) -> None:
        self._track(rid, Request("close", handle=cur.string()))

    def _read(self, rid: int, cur: Cursor) -> None:
        key, offset = cur.string(), cur.u64()
        handle = self.handles.get(key)
        if handle is None or handle.is_dir:
            return
        handle.reads = handle.reads or self._digest()
        if not self._track(rid, Request("read", handle=key, offset=offset)):
            handle.reads.give_up()  # its data will not be seen

    def _write(self, rid: int, cur: Cursor) -> None:
        key, offset, data = cur.string(), cur.u64(), cur.string()
        handle = self.handles.get(key)
        if handle is None or handle.is_dir:
            return
        handle.writes = handle.writes or self._digest()
        handle.writes.add(offset, data)  # WRITEs carry the data: hashed as sent, their STATUS says if it landed
        self._track(rid, Request("write", handle=key))

    def _stat(self, rid: int, cur: Cursor) -> None:
        self._track(rid, Request("stat", cur.path()))

    def _setstat(self, rid: int, cur: Cursor) -> None:
        path = cur.path()
        self._track(rid, Request("setstat", path, extra={"attrs": cur.attrs()}))

    def _fsetstat(self, rid: int, cur: Cursor) -> None:
        handle = self.handles.get(cur.string())
        attrs = cur.attrs()
        if handle is not None:
            self._track(rid, Request("setstat", handle.path, extra={"attrs": attrs}))

    def _opendir(self, rid: int, cur: Cursor) -> None:
        self._track(rid, Request("opendir", cur.path()))

    def _readdir(self, rid: int, cur: Cursor) -> None:
        self._track(rid, Request("readdir", handle=cur.string()))

    def _mkdir(self, rid: int, cur: Cursor) -> None:
        path = cur.path()
        mode = cur.attrs().get("mode")
        self._track(rid, Request("mkdir", path, extra={"mode": mode} if mode else {}))

    def _rename(self, rid: int, cur: Cursor) -> None:
        old = cur.path()
        self._track(rid, Request("rename", old, to=cur.path()))

    def _symlink(self, rid: int, cur: Cursor) -> None:
        # OpenSSH sends the target first and the new link second (the draft says the reverse).
        target = cur.path()
        self._track(rid, Request("symlink", cur.path(), to=target))

    def _extended(self, rid: int, cur: Cursor) -> None:
        name = cur.string()
        if name == b"posix-rename@openssh.com":
            self._rename(rid, cur)
        elif name == b"hardlink@openssh.com":
            target = cur.path()
            self._track(rid, Request("hardlink", cur.path(), to=target))
        elif name == b"lsetstat@openssh.com":
            self._setstat(rid, cur)
        elif name == b"copy-data":
            self._copy_data(rid, cur)
        elif name not in QUERY_EXTENSIONS:
            self._track(rid, Request("extended", extra={"name": text(name, MAX_MESSAGE)}))

    def _copy_data(self, rid: int, cur: Cursor) -> None:
        source_key = cur.string()
        cur.u64(), cur.u64()
        source, target = self.handles.get(source_key), self.handles.get(cur.string())
        if source is None or target is None:
            return
        source.copied = target.copied = True
        if target.writes is not None:
            target.writes.give_up()  # part of its content was written by the server, unseen
        self._track(rid, Request("copy", source.path, to=target.path))

    # --- replies (server → client) ----------------------------------------------------------

    def _reply(self, ptype: int, request: Request, cur: Cursor) -> None:
        if ptype == STATUS:
            code = cur.u32()
            message = "" if cur.at_end() else text(cur.string(), MAX_MESSAGE)
            self._status(request, code, message)
        elif ptype == HANDLE:
            self._new_handle(request, cur.string())
        elif ptype == DATA:
            self._data(request, cur.string())
        elif ptype == NAME:
            self._names(request, cur)
        elif ptype in (ATTRS, EXTENDED_REPLY):
            self._status(request, FX_OK, "")
        else:
            raise Malformed(f"unknown sftp reply type {ptype}")

    def _status(self, request: Request, code: int, message: str) -> None:
        handle = self.handles.get(request.handle) if request.handle else None
        if request.op in ("read", "write", "readdir"):
            if handle is not None and code not in (FX_OK, FX_EOF) and handle.error is None:
                handle.error = status_fields(code, message)
        elif request.op == "close":
            if handle is not None:
                del self.handles[request.handle]
                self._record_handle(handle, status_fields(code, message))
        elif request.op == "open":
            flags, mode = request.extra["flags"], request.extra["mode"]
            self._file({"op": "open", "path": request.path, **open_fields(flags, mode), **status_fields(code, message)})
        elif request.op == "opendir":
            self._file({"op": "list", "path": request.path, **status_fields(code, message)})
        else:
            event = {"op": request.op, "path": request.path}
            if request.to is not None:
                event["to"] = request.to
            self._file({**event, **request.extra, **status_fields(code, message)})

    def _new_handle(self, request: Request, key: bytes) -> None:
        if request.op not in ("open", "opendir") or len(self.handles) >= MAX_HANDLES:
            return
        if request.op == "opendir":
            self.handles[key] = OpenHandle(request.path, is_dir=True)
        else:
            self.handles[key] = OpenHandle(request.path, flags=request.extra["flags"], mode=request.extra["mode"])

    def _data(self, request: Request, data: bytes) -> None:
        handle = self.handles.get(request.handle)
        if request.op == "read" and handle is not None and handle.reads is not None:
            handle.reads.add(request.offset, data)

    def _names(self, request: Request, cur: Cursor) -> None:
        names = []
        for _ in range(cur.u32()):
            name = cur.string()
            cur.string(), cur.attrs()  # the long name and attributes
            if name not in (b".", b".."):
                names.append(name)
        handle = self.handles.get(request.handle)
        if request.op == "readdir" and handle is not None:
            handle.entries += len(names)
            room = MAX_NAMES - len(handle.names)
            handle.names.extend(text(name) for name in names[: max(room, 0)])
        elif request.op != "readdir":
            self._status(request, FX_OK, "")

    def _record_handle(self, handle: OpenHandle, closed: dict) -> None:
        """The events of a closed (or abandoned) handle; the first error seen through it wins over the close's."""
        status = handle.error or closed
        if handle.is_dir:
            listing = {"op": "list", "path": handle.path, "entries": handle.entries, "names": handle.names}
            if handle.entries > len(handle.names):
                listing["names_truncated"] = True
            self._file({**listing, **status})
            return
        if handle.copied and handle.reads is None and handle.writes is None:
            return  # the "copy" event covers it
        base = {"path": handle.path, **open_fields(handle.flags, handle.mode), **status}
        if handle.reads is not None:
            self._file({"op": "read", **base, **handle.reads.fields()})
        if handle.writes is None and handle.flags & OPEN_TRUNC and not handle.copied:
            handle.writes = self._digest()  # truncated and left empty: the content is known, b""
        if handle.writes is not None:
            self._file({"op": "write", **base, **handle.writes.fields()})
        if handle.reads is None and handle.writes is None:
            self._file({"op": "open", **base})

    def _file(self, event: dict) -> None:
        self.tap.record("file", event)


def open_fields(flags: int, mode: str | None) -> dict:
    """The OPEN flags as names (["write", "creat", "trunc"]), and the mode asked for if any."""
    fields: dict = {"flags": [name for bit, name in OPEN_FLAGS if flags & bit]}
    if mode is not None:
        fields["mode"] = mode
    return fields
