"""Files that hold traffic are created 0600 (captures, journals, HAR files, ``wsproxy har``).

Each test sets the umask to the usual 0o022 itself: a file left to the default mode would come
out 0644 under it, so these tests fail if any of them is created with ``open()``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsproxy.capture.files import append_private, create_private
from wsproxy.capture.formats import journal_path
from wsproxy.capture.har import main as har_main
from wsproxy.capture.writer import CaptureWriter


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_jsonl_capture_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    writer = CaptureWriter(path)
    assert mode(path) == 0o600  # from the start, before a record is written
    writer.finish()
    assert mode(path) == 0o600


def test_har_capture_and_its_journal_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "c.har"
    writer = CaptureWriter(path)
    assert mode(journal_path(path)) == 0o600
    writer.finish()
    assert mode(path) == 0o600 and mode(journal_path(path)) == 0o600


def test_an_existing_readable_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    writer = CaptureWriter(path)
    writer.finish()
    assert mode(path) == 0o600 and not path.read_bytes().startswith(b"old")


def test_har_command_outputs_are_0600(tmp_path: Path) -> None:
    journal = tmp_path / "c.har.jsonl"
    CaptureWriter(journal).finish()
    out = tmp_path / "named.har"
    assert har_main([str(journal), "-o", str(out)]) == 0
    assert mode(out) == 0o600
    assert har_main([str(journal)]) == 0  # the default output: c.har
    assert mode(tmp_path / "c.har") == 0o600


def test_helpers_create_0600_and_leave_other_files_alone(tmp_path: Path) -> None:
    with create_private(tmp_path / "a") as binary:
        binary.write(b"x")
    with append_private(tmp_path / "b") as text:
        text.write("x")
    assert mode(tmp_path / "a") == mode(tmp_path / "b") == 0o600
    with append_private(os.devnull) as null:  # not a regular file: its mode is not ours
        null.write("x")
    assert mode(Path(os.devnull)) == 0o666
