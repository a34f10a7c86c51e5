"""The file-transfer tap on real byte streams: OpenSSH's sftp, scp -O and rsync, captured without an SSH server.

`capture_tee.py` sits between the real client and the real far end
(sftp-server, or scp/rsync run as the "remote" side) and logs both
directions in the order it relayed them. The tests replay those bytes into a
`TransferTap` (helpers in `transfer_replay.py`), cut in many ways (1 byte,
odd sizes, whole), and check the events against what really happened on disk.
"""

import base64
import os
import random
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from connections.protocols.ssh.file_transfer import transfer_kind
from connections.protocols.ssh.transfer_records import CONTENT_LIMIT, MAX_LENGTH, MAX_PACKET, ChannelBudget, FileDigest
from tests.protocols.ssh.capture_tee import read_capture
from tests.protocols.ssh.transfer_replay import (
    SFTP_SERVER,
    Records,
    TapEvents,
    command_of,
    fake_ssh,
    file_events,
    only,
    packet,
    random_bytes,
    replay,
    run_client,
    run_scp,
    run_sftp,
    sftp_packets,
    sftp_string,
    sha,
    status,
    stream_bytes,
    summary,
    u32,
)

needs_sftp = pytest.mark.skipif(not (SFTP_SERVER and shutil.which("sftp")), reason="needs OpenSSH sftp and sftp-server")
needs_scp = pytest.mark.skipif(not shutil.which("scp"), reason="needs OpenSSH scp")
needs_rsync = pytest.mark.skipif(not shutil.which("rsync"), reason="needs rsync")

CHUNKINGS = [7, 1000, 65537, None]  # None: each turn of a direction whole
SMALL_CHUNKINGS = [1, 3, 4096, None]
MIB = 1 << 20


# --- sftp ---------------------------------------------------------------------------------


@dataclass
class SftpSession:
    records: Records
    remote: Path
    local: Path
    big: bytes
    remote_bin: bytes


@pytest.fixture(scope="module")
def sftp_session(tmp_path_factory: pytest.TempPathFactory) -> SftpSession:
    """One sftp session doing most things a client does, captured once for the module."""
    if not (SFTP_SERVER and shutil.which("sftp")):
        pytest.skip("needs OpenSSH sftp and sftp-server")
    work = tmp_path_factory.mktemp("sftp")
    remote, local = (work / "remote").resolve(), (work / "local").resolve()
    remote.mkdir()
    local.mkdir()
    big, remote_bin = random_bytes(3 * MIB + 4321, 1), random_bytes(2 * MIB + 77, 2)
    (local / "big.bin").write_bytes(big)
    (local / "empty.txt").write_bytes(b"")
    (remote / "remote.bin").write_bytes(remote_bin)
    (remote / "partial.bin").write_bytes(big[:MIB])
    batch = f"""lcd {local}
put big.bin up.bin
get remote.bin down.bin
rename up.bin moved.bin
mkdir newdir
rmdir newdir
ls
-get missing.bin
chmod 600 moved.bin
symlink remote.bin link.bin
ln remote.bin hard.bin
cp remote.bin copy.bin
reput big.bin partial.bin
put empty.txt
rm moved.bin
-rmdir nosuchdir
-put empty.txt nodir/x.txt
"""
    records = run_sftp(work, remote, "session", batch)
    assert (local / "down.bin").read_bytes() == remote_bin
    assert (remote / "partial.bin").read_bytes() == big
    return SftpSession(records, remote, local, big, remote_bin)


@dataclass
class SmallSftp:
    records: Records
    remote: Path
    data: bytes


@pytest.fixture(scope="module")
def sftp_small(tmp_path_factory: pytest.TempPathFactory) -> SmallSftp:
    """A short sftp session (put, get back, mkdir), small enough to replay a byte at a time."""
    if not (SFTP_SERVER and shutil.which("sftp")):
        pytest.skip("needs OpenSSH sftp and sftp-server")
    work = tmp_path_factory.mktemp("sftp-small")
    remote = (work / "remote").resolve()
    remote.mkdir()
    data = random_bytes(150_000, 3)
    (work / "small.bin").write_bytes(data)
    records = run_sftp(work, remote, "small", f"lcd {work}\nput small.bin\nget small.bin back.bin\nmkdir d\n")
    assert (work / "back.bin").read_bytes() == data
    return SmallSftp(records, remote, data)


@needs_sftp
@pytest.mark.parametrize("size", CHUNKINGS)
def test_it_records_an_sftp_session_as_file_operations(sftp_session: SftpSession, size: int | None) -> None:
    events = replay(sftp_session.records, "sftp", size)
    files, remote = file_events(events), sftp_session.remote

    upload = only(files, op="write", path=f"{remote}/up.bin")
    assert upload["status"] == "ok" and upload["flags"] == ["write", "creat", "trunc"]
    assert upload["bytes"] == len(sftp_session.big) and upload["sha256"] == sha(sftp_session.big)
    assert upload["sequential"] is True and "content" not in upload
    download = only(files, op="read", path=f"{remote}/remote.bin")
    assert download["flags"] == ["read"] and download["status"] == "ok"
    assert download["bytes"] == len(sftp_session.remote_bin) and download["sha256"] == sha(sftp_session.remote_bin)

    assert only(files, op="rename")["path"] == f"{remote}/up.bin"
    assert only(files, op="rename")["to"] == f"{remote}/moved.bin"
    assert only(files, op="mkdir")["path"] == only(files, op="rmdir", status="ok")["path"] == f"{remote}/newdir"
    assert only(files, op="setstat") == {
        "ch": 3,
        "op": "setstat",
        "path": f"{remote}/moved.bin",
        "attrs": {"mode": "0600"},
        "status": "ok",
    }
    assert only(files, op="remove") == {"ch": 3, "op": "remove", "path": f"{remote}/moved.bin", "status": "ok"}
    assert only(files, op="rmdir", status="no such file")["path"] == f"{remote}/nosuchdir"
    assert only(files, op="open") == {
        "ch": 3,
        "op": "open",
        "path": f"{remote}/nodir/x.txt",
        "flags": ["write", "creat", "trunc"],
        "mode": "0644",
        "status": "no such file",
        "message": "No such file",
    }


@needs_sftp
def test_it_records_listings_links_copies_and_a_missing_file(sftp_session: SftpSession) -> None:
    files, remote = file_events(replay(sftp_session.records, "sftp")), sftp_session.remote

    listing = only(files, op="list")
    assert listing["path"] == str(remote) and listing["status"] == "ok"
    assert sorted(listing["names"]) == ["moved.bin", "partial.bin", "remote.bin"] and listing["entries"] == 3
    missing = only(files, path=f"{remote}/missing.bin")  # OpenSSH looks before it opens: one failed stat
    assert missing["op"] == "stat" and missing["status"] == "no such file" and missing["message"] == "No such file"

    symlink = only(files, op="symlink")
    assert symlink["path"] == f"{remote}/link.bin" and symlink["to"] == os.readlink(remote / "link.bin")
    hardlink = only(files, op="hardlink")
    assert hardlink == {"ch": 3, "op": "hardlink", "path": f"{remote}/hard.bin", "to": f"{remote}/remote.bin"} | {
        "status": "ok"
    }
    assert os.path.samefile(remote / "hard.bin", remote / "remote.bin")
    copy = only(files, op="copy")  # server-side copy-data: one event, not the two handles it used
    assert copy == {"ch": 3, "op": "copy", "path": f"{remote}/remote.bin", "to": f"{remote}/copy.bin", "status": "ok"}
    assert not [event for event in files if event["path"] == f"{remote}/copy.bin" and event["op"] != "copy"]


@needs_sftp
def test_it_gives_up_the_hash_of_a_resumed_upload_rather_than_record_a_wrong_one(sftp_session: SftpSession) -> None:
    files, remote = file_events(replay(sftp_session.records, "sftp")), sftp_session.remote

    resumed = only(files, op="write", path=f"{remote}/partial.bin")
    assert "append" in resumed["flags"] and resumed["status"] == "ok"
    assert resumed["sha256"] is None and resumed["sequential"] is False
    assert resumed["bytes"] == len(sftp_session.big) - MIB
    empty = only(files, op="write", path=f"{remote}/empty.txt")
    assert empty["bytes"] == 0 and empty["sha256"] == sha(b"") and empty["sequential"] is True


@needs_sftp
def test_it_summarizes_the_sftp_channel_once(sftp_session: SftpSession) -> None:
    events = replay(sftp_session.records, "sftp", 65537)

    assert summary(events) == {
        "ch": 3,
        "protocol": "sftp",
        "bytes_up": stream_bytes(sftp_session.records, "i"),
        "bytes_down": stream_bytes(sftp_session.records, "o", "e"),
        "files": 4,  # up.bin, remote.bin, partial.bin, empty.txt
        "skipped_packets": 0,
    }
    assert not [kind for kind, _data in events if kind == "transfer_error"]


@needs_sftp
def test_it_records_the_same_events_however_the_bytes_are_cut(sftp_session: SftpSession) -> None:
    whole = replay(sftp_session.records, "sftp")
    for size in CHUNKINGS[:-1]:
        assert replay(sftp_session.records, "sftp", size) == whole


@needs_sftp
@pytest.mark.parametrize("size", SMALL_CHUNKINGS)
def test_it_follows_an_sftp_stream_a_byte_at_a_time(sftp_small: SmallSftp, size: int | None) -> None:
    files = file_events(replay(sftp_small.records, "sftp", size))
    path = f"{sftp_small.remote}/small.bin"

    assert only(files, op="write", path=path)["sha256"] == sha(sftp_small.data)
    assert only(files, op="read", path=path)["sha256"] == sha(sftp_small.data)
    assert only(files, op="mkdir")["path"] == f"{sftp_small.remote}/d"


@needs_sftp
def test_it_hashes_reads_in_offset_order_when_replies_come_out_of_order(sftp_session: SftpSession) -> None:
    reordered: Records = []
    held: Records = []  # DATA replies delayed until the server's next other reply, then sent last first
    for stream, data in sftp_packets(sftp_session.records):
        if stream == "o" and data[4] == 103:
            held.append((stream, data))
            continue
        if stream == "o":
            reordered += reversed(held)
            held = []
        reordered.append((stream, data))
    assert not held and reordered != sftp_packets(sftp_session.records)

    download = only(file_events(replay(reordered, "sftp")), op="read")
    assert download["sha256"] == sha(sftp_session.remote_bin) and download["sequential"] is True
    assert download["bytes"] == len(sftp_session.remote_bin)


@needs_sftp
def test_it_keeps_content_only_when_asked_and_only_up_to_the_cap(
    sftp_small: SmallSftp, sftp_session: SftpSession
) -> None:
    small = file_events(replay(sftp_small.records, "sftp", 4096, keep_content=True))
    for op in ("read", "write"):
        event = only(small, op=op)
        assert base64.b64decode(event["content"]) == sftp_small.data and event["content_truncated"] is False

    big = only(file_events(replay(sftp_session.records, "sftp", keep_content=True)), op="read")
    assert base64.b64decode(big["content"]) == sftp_session.remote_bin[:CONTENT_LIMIT]
    assert big["content_truncated"] is True and big["sha256"] == sha(sftp_session.remote_bin)
    assert not [event for event in file_events(replay(sftp_session.records, "sftp")) if "content" in event]


@needs_sftp
def test_it_records_a_cut_off_upload_as_incomplete(sftp_session: SftpSession) -> None:
    cut, seen, truncated = MIB, 0, []  # the first thing the client sends is the 3 MiB upload
    for kind, data in sftp_session.records:
        if kind == "i":
            data = data[: max(cut - seen, 0)]
            seen += len(data)
        if seen >= cut and kind != "i":
            break
        truncated.append((kind, data))

    events = replay(truncated, "sftp", 1000)
    upload = only(file_events(events), op="write")
    assert upload["status"] == "incomplete" and MIB - 300_000 < upload["bytes"] < MIB
    assert upload["sha256"] == sha(sftp_session.big[: upload["bytes"]])
    assert summary(events)["bytes_up"] == cut and summary(events)["files"] == 0


@needs_sftp
def test_it_survives_damaged_sftp_streams(sftp_small: SmallSftp) -> None:
    rng = random.Random(7)
    for _ in range(60):
        damaged = [(kind, bytearray(data)) for kind, data in sftp_small.records]
        for _flip in range(rng.randint(1, 4)):
            kind, data = rng.choice([record for record in damaged if record[1]])
            data[rng.randrange(len(data))] = rng.randrange(256)
        events = replay([(kind, bytes(data)) for kind, data in damaged], "sftp", rng.choice([1, 5, 700, None]))
        assert [kind for kind, _data in events].count("transfer_error") <= 1
        assert summary(events)["bytes_up"] == stream_bytes(sftp_small.records, "i")
        assert not [data for kind, data in events if "internal error" in str(data.get("error"))]


# --- sftp: hand-built bad input -------------------------------------------------------------


def test_it_skips_an_oversized_packet_and_gives_up_the_hash_it_would_have_needed() -> None:
    run = TapEvents()
    run.start_sftp()
    run.open_for_write(b"/f", b"h1")
    run.write(2, b"h1", 0, b"a" * 100)
    run.write(3, b"h1", 100, b"b" * (MAX_PACKET + 10))
    run.write(4, b"h1", MAX_PACKET + 110, b"c" * 50)
    run.tap.from_host(status(2) + status(3) + status(4), None)
    run.tap.from_client(packet(4, u32(5), sftp_string(b"h1")) + packet(14, u32(6), sftp_string(b"/d"), u32(0)))
    run.tap.from_host(status(5) + status(6), None)
    run.tap.close()

    write = only(file_events(run.events), op="write")
    assert write["bytes"] == MAX_PACKET + 160 and write["sha256"] is None and write["sequential"] is False
    assert only(file_events(run.events), op="mkdir")["status"] == "ok"
    assert summary(run.events)["skipped_packets"] == 1 and "transfer_error" not in run.kinds()


def test_it_skips_a_malformed_packet_and_goes_on() -> None:
    run = TapEvents()
    run.start_sftp()
    run.tap.from_client(packet(3, u32(1), u32(999), b"short"))  # OPEN whose path runs past the packet
    run.tap.from_client(packet(99, u32(2)))  # no such request type
    run.tap.from_client(packet(13, u32(3), sftp_string(b"/gone")))
    run.tap.from_host(status(1, 4) + status(3, 2), None)
    run.tap.close()

    assert file_events(run.events) == [
        {"ch": 5, "op": "remove", "path": "/gone", "status": "no such file"},
    ]
    assert summary(run.events)["skipped_packets"] == 2


def test_it_records_the_first_error_seen_through_a_handle() -> None:
    run = TapEvents()
    run.start_sftp()
    run.open_for_write(b"/full", b"h1")
    run.write(2, b"h1", 0, b"x" * 10)
    run.write(3, b"h1", 10, b"y" * 10)
    run.tap.from_host(status(2), None)
    run.tap.from_host(packet(101, u32(3), u32(4), sftp_string(b"No space left"), sftp_string(b"")), None)
    run.tap.from_client(packet(4, u32(4), sftp_string(b"h1")))
    run.tap.from_host(status(4, 4), None)
    run.tap.close()

    write = only(file_events(run.events), op="write")
    assert write["status"] == "failure" and write["message"] == "No space left"
    assert write["bytes"] == 20 and write["sha256"] == sha(b"x" * 10 + b"y" * 10)
    assert summary(run.events)["files"] == 0


def test_it_stops_parsing_after_a_framing_error_but_keeps_counting() -> None:
    run = TapEvents()
    run.start_sftp()
    started = run.tap.bytes_up
    run.tap.from_client(u32(MAX_LENGTH + 1) + b"x" * 100)
    mkdir = packet(14, u32(2), sftp_string(b"/d"), u32(0))
    run.tap.from_client(mkdir)
    run.tap.from_host(status(2), None)
    run.tap.close()

    assert run.kinds() == ["transfer_error", "transfer"]
    error = run.events[0][1]
    assert error == {"ch": 5, "protocol": "sftp", "direction": "up", "error": error["error"], "at": started + 104}
    assert str(MAX_LENGTH + 1) in error["error"]
    assert summary(run.events)["bytes_up"] == started + 104 + len(mkdir)


def test_it_reports_a_stream_that_is_not_sftp() -> None:
    for garbage in (b"SSH-2.0-hello\r\n", u32(5) + b"\x05abcd", u32(0)):
        run = TapEvents()
        run.tap.from_client(garbage)
        run.tap.from_host(b"whatever", None)
        run.tap.close()
        assert run.kinds() == ["transfer_error", "transfer"], garbage


def test_it_holds_early_bytes_to_hash_them_in_offset_order() -> None:
    digest = FileDigest(ChannelBudget(held=1000), keep_content=True)
    for offset, data in ((6, b"ghi"), (3, b"def"), (0, b"abc"), (9, b"")):
        digest.add(offset, data)

    assert digest.fields() == {
        "bytes": 9,
        "sha256": sha(b"abcdefghi"),
        "sequential": True,
        "content": base64.b64encode(b"abcdefghi").decode(),
        "content_truncated": False,
    }


@pytest.mark.parametrize(
    "chunks",
    [
        [(0, b"abcd"), (2, b"cd")],  # overlap
        [(0, b"ab"), (4, b"ef")],  # a hole never filled
        [(3, b"def")],  # started past the beginning (a resumed transfer)
        [(0, b"ab"), (10, b"x" * 11)],  # would hold more than the reorder budget
        [(0, b"ab"), (4, b"ef"), (4, b"ef"), (2, b"cd")],  # the same offset twice
    ],
)
def test_it_gives_up_the_hash_when_access_is_not_sequential(chunks: list[tuple[int, bytes]]) -> None:
    budget = ChannelBudget(held=10)
    digest = FileDigest(budget, keep_content=False)
    for offset, data in chunks:
        digest.add(offset, data)

    fields = digest.fields()
    assert fields == {"bytes": sum(len(data) for _offset, data in chunks), "sha256": None, "sequential": False}
    assert budget.held == 10


def test_it_shares_one_content_budget_among_a_channels_open_files() -> None:
    budget = ChannelBudget(content=6)
    first, second = FileDigest(budget, keep_content=True), FileDigest(budget, keep_content=True)
    first.add(0, b"abcd")
    second.add(0, b"wxyz")

    recorded = second.fields()
    assert base64.b64decode(recorded["content"]) == b"wx" and recorded["content_truncated"] is True
    assert recorded["sha256"] == sha(b"wxyz")
    assert first.fields()["content_truncated"] is False
    third = FileDigest(budget, keep_content=True)  # what was recorded went back to the budget
    third.add(0, b"123456")
    recorded = third.fields()
    assert base64.b64decode(recorded["content"]) == b"123456" and recorded["content_truncated"] is False
    assert budget.content == 6


def test_it_does_not_guess_at_later_sftp_versions() -> None:
    run = TapEvents()
    run.tap.from_client(packet(1, u32(6)))
    run.tap.from_host(packet(2, u32(6)), None)
    run.tap.from_client(packet(13, u32(3), sftp_string(b"/gone")))
    run.tap.close()

    assert run.kinds() == ["transfer_error", "transfer"]
    assert run.events[0][1]["error"] == "sftp version 6 is not parsed (3 is)"
    assert run.events[0][1]["direction"] == "down"


# --- legacy scp -----------------------------------------------------------------------------


@dataclass
class ScpCaptures:
    work: Path
    remote: Path
    single: bytes
    tree: dict[str, bytes]
    records: dict[str, Records]


@pytest.fixture(scope="module")
def scp_captures(tmp_path_factory: pytest.TempPathFactory) -> ScpCaptures:
    """Legacy-protocol scp runs (uploads and downloads, single and -r, and failures), captured once."""
    if not shutil.which("scp"):
        pytest.skip("needs OpenSSH scp")
    work = tmp_path_factory.mktemp("scp").resolve()
    remote = work / "remote"
    (remote / "dest").mkdir(parents=True)
    single = random_bytes(700_000, 4)
    tree = {"a.txt": b"hello scp\n", "sub/b.bin": random_bytes(1_500_000, 5), "sub/empty": b""}
    for root in (work / "tree", remote / "srctree"):
        for name, data in tree.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
    (work / "single.bin").write_bytes(single)
    (remote / "src.bin").write_bytes(single)
    (work / "dl").mkdir()
    records = {
        "upload": run_scp(work, "upload", "-p", "single.bin", f"host:{remote}/dest/"),
        "upload_as": run_scp(work, "upload_as", "single.bin", f"host:{remote}/dest/renamed.bin"),
        "upload_tree": run_scp(work, "upload_tree", "-r", "tree", f"host:{remote}/dest"),
        "download": run_scp(work, "download", "-p", f"host:{remote}/src.bin", "dl/"),
        "download_tree": run_scp(work, "download_tree", "-r", f"host:{remote}/srctree", "dl/"),
        "download_missing": run_scp(work, "download_missing", f"host:{remote}/missing.bin", "dl/", ok=False),
        "upload_nowhere": run_scp(work, "upload_nowhere", "single.bin", f"host:{remote}/no/such.bin", ok=False),
    }
    assert (remote / "dest" / "single.bin").read_bytes() == (remote / "dest" / "renamed.bin").read_bytes() == single
    assert (remote / "dest" / "tree" / "sub" / "b.bin").read_bytes() == tree["sub/b.bin"]
    assert (work / "dl" / "srctree" / "sub" / "b.bin").read_bytes() == tree["sub/b.bin"]
    return ScpCaptures(work, remote, single, tree, records)


def replay_scp(captures: ScpCaptures, name: str, size: int | None = None, **options: object) -> list:
    records = captures.records[name]
    return replay(records, "scp", size, command=command_of(records), **options)


@needs_scp
@pytest.mark.parametrize("size", [1, *CHUNKINGS])
def test_it_records_an_scp_upload_with_its_mode_and_time(scp_captures: ScpCaptures, size: int | None) -> None:
    events = replay_scp(scp_captures, "upload", size)
    target, local = scp_captures.remote / "dest" / "single.bin", (scp_captures.work / "single.bin").stat()

    assert file_events(events) == [
        {
            "ch": 3,
            "op": "write",
            "path": str(target),
            "name": "single.bin",
            "mode": format(stat.S_IMODE(local.st_mode), "04o"),
            "mtime": int(local.st_mtime),
            "status": "ok",
            "bytes": len(scp_captures.single),
            "sha256": sha(scp_captures.single),
            "sequential": True,
        }
    ]
    assert summary(events) == {
        "ch": 3,
        "protocol": "scp",
        "bytes_up": stream_bytes(scp_captures.records["upload"], "i"),
        "bytes_down": stream_bytes(scp_captures.records["upload"], "o", "e"),
        "files": 1,
        "skipped_packets": 0,
        "direction": "upload",
    }


@needs_scp
def test_it_records_an_scp_upload_under_another_name(scp_captures: ScpCaptures) -> None:
    upload = only(file_events(replay_scp(scp_captures, "upload_as", 1000)), op="write")
    assert upload["path"] == f"{scp_captures.remote}/dest/renamed.bin" and upload["name"] == "single.bin"
    assert upload["sha256"] == sha(scp_captures.single) and "mtime" not in upload


@needs_scp
@pytest.mark.parametrize("size", [1, *CHUNKINGS])
def test_it_records_an_scp_download(scp_captures: ScpCaptures, size: int | None) -> None:
    events = replay_scp(scp_captures, "download", size)
    download = only(file_events(events), op="read")

    assert download["path"] == f"{scp_captures.remote}/src.bin" and download["status"] == "ok"
    assert download["bytes"] == len(scp_captures.single) and download["sha256"] == sha(scp_captures.single)
    assert summary(events)["direction"] == "download" and summary(events)["files"] == 1


@needs_scp
@pytest.mark.parametrize("size", [5, *CHUNKINGS])
def test_it_records_each_file_of_a_recursive_scp_upload(scp_captures: ScpCaptures, size: int | None) -> None:
    events = replay_scp(scp_captures, "upload_tree", size)
    root = f"{scp_captures.remote}/dest/tree"

    assert [(event["op"], event["path"]) for event in file_events(events, "mkdir")] == [
        ("mkdir", root),
        ("mkdir", f"{root}/sub"),
    ]
    written = {event["path"]: event["sha256"] for event in file_events(events, "write")}
    assert written == {f"{root}/{name}": sha(data) for name, data in scp_captures.tree.items()}
    assert summary(events)["files"] == 3


@needs_scp
@pytest.mark.parametrize("size", [5, *CHUNKINGS])
def test_it_records_each_file_of_a_recursive_scp_download(scp_captures: ScpCaptures, size: int | None) -> None:
    events = replay_scp(scp_captures, "download_tree", size)
    root = f"{scp_captures.remote}/srctree"

    read = {event["path"]: (event["bytes"], event["sha256"]) for event in file_events(events, "read")}
    assert read == {f"{root}/{name}": (len(data), sha(data)) for name, data in scp_captures.tree.items()}
    assert not file_events(events, "mkdir")


@needs_scp
def test_it_records_scp_failures(scp_captures: ScpCaptures) -> None:
    missing = file_events(replay_scp(scp_captures, "download_missing", 3))
    assert missing == [
        {
            "ch": 3,
            "op": "read",
            "path": f"{scp_captures.remote}/missing.bin",
            "status": f"scp: {scp_captures.remote}/missing.bin: No such file or directory",
        }
    ]
    nowhere = only(file_events(replay_scp(scp_captures, "upload_nowhere", 3)), op="write")
    assert nowhere["path"] == f"{scp_captures.remote}/no/such.bin" and "No such file" in nowhere["status"]
    assert "sha256" not in nowhere  # refused before any data was sent


@needs_scp
def test_it_tells_the_scp_direction_without_the_command(scp_captures: ScpCaptures) -> None:
    upload = replay(scp_captures.records["upload"], "scp", 1000)
    assert only(file_events(upload), op="write")["path"] == "single.bin"
    assert summary(upload)["direction"] == "upload"
    download = replay(scp_captures.records["download"], "scp", 1000)
    assert only(file_events(download), op="read")["sha256"] == sha(scp_captures.single)
    assert summary(download)["direction"] == "download"


@needs_scp
def test_it_survives_damaged_scp_streams(scp_captures: ScpCaptures) -> None:
    rng = random.Random(8)
    for _ in range(60):
        name = rng.choice(["upload_tree", "download_tree", "download_missing"])
        records = scp_captures.records[name]
        damaged = [(kind, bytearray(data)) for kind, data in records if kind != "c"]
        for _flip in range(rng.randint(1, 3)):
            kind, data = rng.choice([record for record in damaged if record[1]])
            data[rng.randrange(len(data))] = rng.choice([0, 1, 10, 32, 48, 67, 68, 69, rng.randrange(256)])
        damaged_records = [(kind, bytes(data)) for kind, data in damaged]
        events = replay(damaged_records, "scp", rng.choice([7, 700, None]), command=command_of(records))
        assert [kind for kind, _data in events].count("transfer_error") <= 1
        assert summary(events)["bytes_up"] == stream_bytes(records, "i")
        assert not [data for kind, data in events if "internal error" in str(data.get("error"))]


@needs_scp
def test_it_records_a_cut_off_scp_file_as_incomplete(scp_captures: ScpCaptures) -> None:
    records = scp_captures.records["download"]
    total = stream_bytes(records, "o")
    kept, seen = [], 0
    for kind, data in records:
        if kind == "o":
            data = data[: max(total // 2 - seen, 0)]
            seen += len(data)
        kept.append((kind, data))

    download = only(file_events(replay(kept, "scp", 4096, command=command_of(records))), op="read")
    assert download["status"] == "incomplete" and 0 < download["bytes"] < len(scp_captures.single)


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        ([b"Zgarbage\n"], "unexpected scp control line"),
        ([b"C0644 12 x\n", b"X"], "scp acknowledgement starts with byte 88"),
        ([b"C0644 many x\n"], "bad scp C line"),
        ([b"C0644 " + b"9" * 5000 + b" x\n"], "bad scp C line"),
        ([b"C0644 3 x\n", b"\0", b"abcZ"], "scp file data ends with byte 90"),
        ([b"C0644 3 " + b"x" * 10000], "scp line too long"),
        ([b"C0644 1 x\n" + b"y" * 70000], "more than expected before its acknowledgement"),
    ],
)
def test_it_reports_a_broken_scp_stream(steps: list[bytes], error: str) -> None:
    run = TapEvents("scp", "scp -t /tmp/in")
    run.tap.from_host(b"\0", None)  # the sink is ready
    for turn, data in enumerate(steps):  # the client's turns (in 3-byte pieces) and the host's answers alternate
        for at in range(0, len(data), 3):
            if turn % 2:
                run.tap.from_host(data[at : at + 3], None)
            else:
                run.tap.from_client(data[at : at + 3])
    run.tap.close()

    errors = [data for kind, data in run.events if kind == "transfer_error"]
    assert len(errors) == 1 and error in errors[0]["error"], run.events
    assert summary(run.events)["bytes_up"] == sum(len(data) for data in steps[::2])


# --- rsync and channel kinds ------------------------------------------------------------------


@needs_rsync
@pytest.mark.parametrize("direction", ["upload", "download"])
def test_it_counts_an_rsync_transfer_each_way(tmp_path: Path, direction: str) -> None:
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "sub" / "f.bin").write_bytes(random_bytes(200_000, 6))
    (tmp_path / "dst").mkdir()
    script, log = fake_ssh(tmp_path, "rsync")
    source, target = ("src/", f"host:{tmp_path}/dst/") if direction == "upload" else (f"host:{tmp_path}/src/", "dst/")
    result = run_client(["rsync", "-a", "-e", str(script), source, target], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dst" / "sub" / "f.bin").read_bytes() == (tmp_path / "src" / "sub" / "f.bin").read_bytes()
    records = read_capture(log)

    command = command_of(records)
    assert transfer_kind("exec", None, command) == "rsync"
    events = replay(records, "rsync", 1000, command=command)
    assert events == [
        (
            "transfer",
            {
                "ch": 3,
                "protocol": "rsync",
                "bytes_up": stream_bytes(records, "i"),
                "bytes_down": stream_bytes(records, "o", "e"),
                "files": 0,
                "skipped_packets": 0,
                "direction": direction,
                "paths": [f"{tmp_path}/dst/" if direction == "upload" else f"{tmp_path}/src/"],
            },
        )
    ]


@pytest.mark.parametrize(
    ("kind", "subsystem", "command", "expected"),
    [
        ("subsystem", "sftp", None, "sftp"),
        ("subsystem", "netconf", None, ""),
        ("exec", None, "scp -t -- /tmp/x", "scp"),
        ("exec", None, "/usr/bin/scp -r -p -f '/srv/a dir'", "scp"),
        ("exec", None, "scp /a /b", ""),
        ("exec", None, "rsync --server --sender -vlogDtpre.iLsfxCIvu . /srv/", "rsync"),
        ("exec", None, "rsync -a /a /b", ""),
        ("exec", None, "/usr/lib/openssh/sftp-server", "sftp"),
        ("exec", None, "ls 'unterminated", ""),
        ("shell", None, None, ""),
    ],
)
def test_it_tells_which_channels_move_files(
    kind: str, subsystem: str | None, command: str | None, expected: str
) -> None:
    assert transfer_kind(kind, subsystem, command) == expected


def test_it_counts_a_channel_it_does_not_parse() -> None:
    run = TapEvents("rsync", "rsync --server . /srv/in/")
    run.tap.from_client(b"x" * 10)
    run.tap.from_host(b"y" * 4, None)
    run.tap.from_host(b"warning\n", 1)
    run.tap.close()
    run.tap.from_client(b"late")

    assert run.events == [
        (
            "transfer",
            {
                "ch": 5,
                "protocol": "rsync",
                "bytes_up": 10,
                "bytes_down": 12,
                "files": 0,
                "skipped_packets": 0,
                "direction": "upload",
                "paths": ["/srv/in/"],
            },
        )
    ]
