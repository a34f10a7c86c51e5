"""Files through the SSH gateway with real clients: scp both ways (SFTP and legacy protocol), sftp batch, rsync."""

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.protocols.ssh_nodes import SshAccess, last_session_id, new_recordings

BIG = 100 * 1024 * 1024


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 1 << 20))
            handle.write(block)
            remaining -= len(block)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["sftp-protocol", "scp-protocol"])
def test_it_copies_100_mb_both_ways_with_scp(ssh_access: SshAccess, tmp_path: Path, legacy: bool) -> None:
    source = random_file(tmp_path / "source.bin", BIG)
    remote = tmp_path / "remote" / "copy.bin"
    remote.parent.mkdir()
    flags = ["-O"] if legacy else []
    before = last_session_id(ssh_access.gateway)
    up = subprocess.run(
        ["scp", *flags, *ssh_access.scp_options(), str(source), ssh_access.remote(remote)],
        capture_output=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stderr
    back = tmp_path / "back.bin"
    down = subprocess.run(
        ["scp", *flags, *ssh_access.scp_options(), ssh_access.remote(remote), str(back)],
        capture_output=True,
        timeout=300,
    )
    assert down.returncode == 0, down.stderr
    assert sha256_of(remote) == sha256_of(source) == sha256_of(back)
    upload, download = new_recordings(ssh_access.gateway, before, 2)
    assert upload.data("transfer")[0]["bytes_up"] >= BIG
    assert download.data("transfer")[0]["bytes_down"] >= BIG
    for recording in (upload, download):  # file content is not recorded by default
        assert recording.path.stat().st_size < 1 << 20


def test_it_runs_an_sftp_batch(ssh_access: SshAccess, tmp_path: Path) -> None:
    source = random_file(tmp_path / "a.bin", 300_000)
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    batch = tmp_path / "batch"
    batch.write_text(
        f"put {source} {remote_dir}/a.bin\nrename {remote_dir}/a.bin {remote_dir}/b.bin\n"
        f"mkdir {remote_dir}/sub\nget {remote_dir}/b.bin {tmp_path}/got.bin\nls {remote_dir}\n"
        f"rm {remote_dir}/b.bin\nrmdir {remote_dir}/sub\n"
    )
    result = subprocess.run(
        ["sftp", *ssh_access.scp_options(), "-b", str(batch), ssh_access.destination],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sha256_of(tmp_path / "got.bin") == sha256_of(source)
    assert list(remote_dir.iterdir()) == []


def test_it_carries_rsync_over_ssh(ssh_access: SshAccess, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "deep").mkdir(parents=True)
    random_file(tree / "one.bin", 200_000)
    random_file(tree / "deep" / "two.bin", 50_000)
    target = tmp_path / "mirror"
    shell = " ".join(["ssh", *ssh_access.scp_options()]).replace("-P ", "-p ")
    result = subprocess.run(
        ["rsync", "-a", "-e", shell, f"{tree}/", f"{ssh_access.destination}:{target}/"],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sha256_of(target / "one.bin") == sha256_of(tree / "one.bin")
    assert sha256_of(target / "deep" / "two.bin") == sha256_of(tree / "deep" / "two.bin")
