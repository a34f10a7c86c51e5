"""Runs a program between a file-transfer client and its "remote" end, logging both directions in order.

The file-transfer tests use it to capture the real byte streams of OpenSSH's
sftp and scp (and rsync) without an SSH connection:

    capture_tee.py LOG -- PROGRAM [ARG...]
        run PROGRAM (e.g. `sftp -D "python capture_tee.py LOG -- /usr/lib/openssh/sftp-server"`)
    capture_tee.py LOG --remote [SSH-OPTION...] HOST COMMAND
        stand in for ssh (scp -S, rsync -e): ignore the options and host, run COMMAND with sh -c

Each chunk is logged as it is relayed: one byte naming the stream ("c" the
command, "i" client to program, "o" program stdout to client, "e" program
stderr), a 4-byte big-endian length, the bytes. A chunk is logged before it
is passed on, so an answer is always logged after what it answers.
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

CHUNK = 65536


def read_capture(path: Path) -> list[tuple[str, bytes]]:
    """The (stream, bytes) records of a capture file, in the order they were relayed."""
    data = path.read_bytes()
    records, pos = [], 0
    while pos < len(data):
        stream, size = chr(data[pos]), int.from_bytes(data[pos + 1 : pos + 5], "big")
        records.append((stream, data[pos + 5 : pos + 5 + size]))
        pos += 5 + size
    return records


class CaptureLog:
    """The capture file; records from the relaying threads are written whole, one at a time."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "ab")  # noqa: SIM115 - open for the life of the process
        self.lock = threading.Lock()

    def write(self, stream: str, data: bytes) -> None:
        with self.lock:
            self.file.write(stream.encode() + len(data).to_bytes(4, "big") + data)
            self.file.flush()


def relay(log: CaptureLog, stream: str, source: int, target: int) -> None:
    """Copy source to target until EOF, logging each chunk first; then close target."""
    while True:
        try:
            data = os.read(source, CHUNK)
        except OSError:
            data = b""
        if not data:
            break
        log.write(stream, data)
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(target, view) :]
            except BrokenPipeError:
                return
    os.close(target)


SSH_OPTIONS_WITH_VALUE = set("BbcDEeFIiJLlmOoPpQRSWw")


def remote_command(ssh_args: list[str]) -> str:
    """What ssh would run on the host for these arguments: the words after the host, joined by spaces."""
    args = iter(ssh_args)
    for arg in args:
        if arg == "--":
            next(args)  # the host
            break
        if arg.startswith("-") and len(arg) > 1:
            if arg[-1] in SSH_OPTIONS_WITH_VALUE and len(arg) == 2:
                next(args)
            continue
        break  # the host
    return " ".join(args)


def main(argv: list[str]) -> int:
    log = CaptureLog(argv[1])
    if argv[2] == "--":
        command = argv[3:]
    else:  # --remote: stand in for ssh
        remote = remote_command(argv[3:])
        log.write("c", remote.encode())
        command = ["/bin/sh", "-c", remote]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    threads = [
        threading.Thread(target=relay, args=(log, "i", sys.stdin.fileno(), child.stdin.fileno()), daemon=True),
        threading.Thread(target=relay, args=(log, "o", child.stdout.fileno(), sys.stdout.fileno())),
        threading.Thread(target=relay, args=(log, "e", child.stderr.fileno(), sys.stderr.fileno())),
    ]
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join()
    return child.wait()


if __name__ == "__main__":
    # os._exit: the relays closed the pipes' descriptors themselves, and the stdin relay may still be blocked.
    os._exit(main(sys.argv))
