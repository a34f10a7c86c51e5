"""Replaying captured file-transfer streams into a TransferTap, for the file-transfer tests.

Captures come from `capture_tee.py` (real clients, real far ends); hand-built
sftp packets from the builders at the end, for input no real client sends.
"""

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from connections.protocols.ssh.file_transfer import TransferTap
from tests.protocols.ssh.capture_tee import read_capture

TEE = Path(__file__).with_name("capture_tee.py")
SFTP_SERVER = next(
    (
        path
        for path in ("/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server", "/usr/libexec/openssh/sftp-server")
        if os.access(path, os.X_OK)
    ),
    None,
)
CLIENT_TIMEOUT = 120

Records = list[tuple[str, bytes]]


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rechunk(records: Records, size: int | None) -> Records:
    """The same bytes in the same interleaving, each turn of a stream cut in `size` pieces (whole when None)."""
    turns: list[tuple[str, list[bytes]]] = []
    for stream, data in records:
        if stream == "c":
            continue
        if turns and turns[-1][0] == stream:
            turns[-1][1].append(data)
        else:
            turns.append((stream, [data]))
    whole = [(stream, b"".join(parts)) for stream, parts in turns]
    if size is None:
        return whole
    return [(stream, data[i : i + size]) for stream, data in whole for i in range(0, len(data), size)]


def replay(
    records: Records, kind: str, size: int | None = None, keep_content: bool = False, command: str | None = None
) -> list[tuple[str, dict]]:
    """Feeds a capture to a fresh tap, cut by `size`, closes it, and returns the events it recorded."""
    events: list[tuple[str, dict]] = []
    tap = TransferTap(kind, 3, lambda event_kind, data: events.append((event_kind, data)), keep_content, command)
    for stream, data in rechunk(records, size):
        if stream == "i":
            tap.from_client(data)
        else:
            tap.from_host(data, None if stream == "o" else 1)
    tap.close()
    tap.close()  # a second close records nothing
    for _kind, data in events:
        assert data["ch"] == 3
        json.dumps(data)
    return events


def file_events(events: list[tuple[str, dict]], op: str | None = None) -> list[dict]:
    return [data for kind, data in events if kind == "file" and (op is None or data["op"] == op)]


def only(events: list[dict], **match: object) -> dict:
    found = [event for event in events if all(event.get(key) == value for key, value in match.items())]
    assert len(found) == 1, (match, events)
    return found[0]


def summary(events: list[tuple[str, dict]]) -> dict:
    kinds = [kind for kind, _data in events]
    assert kinds.count("transfer") == 1 and kinds[-1] == "transfer", kinds
    return events[-1][1]


def stream_bytes(records: Records, *streams: str) -> int:
    return sum(len(data) for stream, data in records if stream in streams)


def command_of(records: Records) -> str:
    return next(data.decode() for stream, data in records if stream == "c")


def run_client(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False)


def run_sftp(workdir: Path, remote: Path, name: str, batch: str) -> Records:
    """Runs OpenSSH's sftp against a local sftp-server (cwd `remote`) through the tee; returns the capture."""
    log, batch_file = workdir / f"{name}.capture", workdir / f"{name}.batch"
    batch_file.write_text(batch)
    server = f"{sys.executable} {TEE} {log} -- {SFTP_SERVER}"
    result = run_client(["sftp", "-b", str(batch_file), "-D", server], remote)
    assert result.returncode == 0, result.stderr
    return read_capture(log)


def fake_ssh(workdir: Path, name: str) -> tuple[Path, Path]:
    """A stand-in for ssh (scp -S, rsync -e) that runs the remote command locally through the tee."""
    log, script = workdir / f"{name}.capture", workdir / f"{name}.ssh"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {TEE} {log} --remote "$@"\n')
    script.chmod(0o755)
    return script, log


def run_scp(workdir: Path, name: str, *args: str, ok: bool = True) -> Records:
    script, log = fake_ssh(workdir, name)
    result = run_client(["scp", "-O", "-q", "-S", str(script), *args], workdir)
    assert (result.returncode == 0) == ok, result.stderr
    return read_capture(log)


def sftp_packets(records: Records) -> Records:
    """A capture as whole sftp packets, each placed where its last byte was relayed."""
    buffers = {"i": bytearray(), "o": bytearray()}
    packets = []
    for stream, data in records:
        if stream not in buffers:
            continue
        buffer = buffers[stream]
        buffer += data
        while len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[:4], "big"):
            size = 4 + int.from_bytes(buffer[:4], "big")
            packets.append((stream, bytes(buffer[:size])))
            del buffer[:size]
    return packets


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def sftp_string(value: bytes) -> bytes:
    return u32(len(value)) + value


def packet(ptype: int, *fields: bytes) -> bytes:
    body = bytes([ptype]) + b"".join(fields)
    return u32(len(body)) + body


def status(rid: int, code: int = 0) -> bytes:
    return packet(101, u32(rid), u32(code), sftp_string(b""), sftp_string(b""))


class TapEvents:
    """A tap and what it recorded."""

    def __init__(self, kind: str = "sftp", command: str | None = None) -> None:
        self.events: list[tuple[str, dict]] = []
        self.tap = TransferTap(kind, 5, lambda event_kind, data: self.events.append((event_kind, data)), False, command)

    def kinds(self) -> list[str]:
        return [kind for kind, _data in self.events]

    def start_sftp(self) -> None:
        self.tap.from_client(packet(1, u32(3)))
        self.tap.from_host(packet(2, u32(3)), None)

    def open_for_write(self, path: bytes, handle: bytes) -> None:
        self.tap.from_client(packet(3, u32(1), sftp_string(path), u32(0x1A), u32(0)))
        self.tap.from_host(packet(102, u32(1), sftp_string(handle)), None)

    def write(self, rid: int, handle: bytes, offset: int, data: bytes, chunk: int = 4096) -> None:
        raw = packet(6, u32(rid), sftp_string(handle), offset.to_bytes(8, "big"), sftp_string(data))
        for at in range(0, len(raw), chunk):
            self.tap.from_client(raw[at : at + chunk])
