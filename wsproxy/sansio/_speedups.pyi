"""Type stub for the C extension built from _speedups.c (contracts: masking.py, fastpath.py)."""

import zlib
from collections.abc import Callable

_Inflate = Callable[[bytes], bytes] | tuple[zlib._Decompress, bytearray, Callable[[bytes], bytes]]

def mask(buffer: bytearray | memoryview, key: bytes, offset: int = 0, /) -> None: ...
def mask_copy(data: bytes | bytearray | memoryview, key: bytes, offset: int = 0, /) -> bytes: ...
def relay_frames(
    data: bytes | bytearray | memoryview,
    masked: bool,
    max_frame: int,
    max_message: int,
    keys: bytes,
    key_pos: int,
    /,
) -> tuple[int, bytes | None, int, int]: ...
def relay_frames_recorded(
    data: bytes | bytearray | memoryview,
    masked: bool,
    max_frame: int,
    max_message: int,
    keys: bytes,
    key_pos: int,
    keep: int,
    /,
) -> tuple[int, bytes | None, int, list[tuple[int, int, bytes]]]: ...
def whole_frames(
    data: bytes | bytearray | memoryview,
    masked: bool,
    max_frame: int,
    max_message: int,
    keys: bytes,
    key_pos: int,
    budget: int,
    /,
) -> tuple[int, list[tuple[int, bytes, bytes]], int]: ...
def relay_deflated(
    data: bytes | bytearray | memoryview,
    masked: bool,
    max_frame: int,
    max_message: int,
    keys: bytes,
    key_pos: int,
    inflate: _Inflate,
    max_compressed: int,
    /,
) -> tuple[int, bytes | None, int, int, tuple[int, str] | BaseException | None]: ...
def whole_deflated(
    data: bytes | bytearray | memoryview,
    masked: bool,
    max_frame: int,
    max_message: int,
    keys: bytes,
    key_pos: int,
    inflate: _Inflate,
    max_compressed: int,
    budget: int,
    /,
) -> tuple[
    int,
    list[tuple[int, bytes, bytes | None, bytes]],
    int,
    tuple[int, str] | BaseException | None,
]: ...
