"""masking.py and _speedups.c: the same vectors through the C extension and the pure fallback."""

from __future__ import annotations

import importlib
import sys
import threading
from array import array
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sansio.conftest import IN_CI, MASK_COPIERS, MASKERS, require_extension
from wsproxy.sansio import frames, masking
from wsproxy.sansio.masking import CHUNK, MaskCopier, Masker

KEY = bytes.fromhex("37fa213d")  # RFC 6455 section 5.7


def reference(data: bytes, key: bytes, offset: int = 0) -> bytes:
    """RFC 6455 section 5.3, literally: octet i XOR key[(offset + i) MOD 4]."""
    return bytes(b ^ key[(offset + i) % 4] for i, b in enumerate(data))


def mismatch(got: bytes | bytearray, expected: bytes) -> str | None:
    """Where two payloads differ, in a few words: pytest's own diff of a megabyte takes minutes."""
    if len(got) != len(expected):
        return f"{len(got)} bytes, expected {len(expected)}"
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        if a != b:
            return f"byte {index} is {a:#04x}, expected {b:#04x}"
    return None


def masked(mask: Masker, data: bytes, key: bytes, offset: int = 0) -> bytes:
    buffer = bytearray(data)
    mask(buffer, key, offset)
    return bytes(buffer)


PATTERN = bytes(range(251))  # a prime length, so no piece lines up with the key by accident


def payload(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


@pytest.mark.parametrize("mask", MASKERS)
def test_rfc_vector(mask: Masker) -> None:
    # RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d.
    assert masked(mask, b"Hello", KEY) == bytes.fromhex("7f9f4d5158")
    assert masked(mask, bytes.fromhex("7f9f4d5158"), KEY) == b"Hello"


# Around the C loop's 8- and 32-byte steps, the fallback's CHUNK pieces, and the size from
# which the C one releases the GIL (64 KiB).
SIZES = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 39, 40, 41, 63, 64, 65]
SIZES += [CHUNK - 1, CHUNK, CHUNK + 1, CHUNK + 5, 2 * CHUNK, 3 * CHUNK + 7]
SIZES += [65535, 65536, 65537, 65536 + CHUNK + 3]


@pytest.mark.parametrize("mask", MASKERS)
@pytest.mark.parametrize("size", SIZES)
def test_every_size_and_offset_against_the_rfc(mask: Masker, size: int) -> None:
    data = payload(size)
    for offset in range(8):
        once = masked(mask, data, KEY, offset)
        assert mismatch(once, reference(data, KEY, offset)) is None, offset
        assert mismatch(masked(mask, once, KEY, offset), data) is None  # its own inverse


@pytest.mark.parametrize("mask", MASKERS)
def test_a_megabyte_in_place(mask: Masker) -> None:
    data = payload((1 << 20) + 3)
    assert mismatch(masked(mask, data, KEY, 3), reference(data, KEY, 3)) is None


@pytest.mark.parametrize("mask", MASKERS)
def test_pieces_with_running_offsets_equal_the_whole(mask: Masker) -> None:
    data = payload(3 * CHUNK + 11)
    whole = masked(mask, data, KEY)
    for cut in [1, 2, 3, 5, 8, CHUNK - 1, CHUNK + 2, 2 * CHUNK + 7]:
        head = masked(mask, data[:cut], KEY)
        tail = masked(mask, data[cut:], KEY, cut)
        assert mismatch(head + tail, whole) is None, cut


@pytest.mark.parametrize("mask", MASKERS)
@given(
    data=st.binary(max_size=300),
    key=st.binary(min_size=4, max_size=4),
    offset=st.integers(0, 2**40),
)
def test_any_bytes_key_and_offset(mask: Masker, data: bytes, key: bytes, offset: int) -> None:
    assert masked(mask, data, key, offset) == reference(data, key, offset)


@pytest.mark.parametrize("mask", MASKERS)
def test_only_the_view_is_changed(mask: Masker) -> None:
    # A writable memoryview into a larger buffer: the bytes around it stay as they were.
    buffer = bytearray(payload(CHUNK * 2 + 40))
    before = bytes(buffer)
    mask(memoryview(buffer)[10:-10], KEY, 1)
    assert buffer[:10] == before[:10]
    assert buffer[-10:] == before[-10:]
    assert mismatch(buffer[10:-10], reference(before[10:-10], KEY, 1)) is None


@pytest.mark.parametrize("mask", MASKERS)
def test_any_format_is_masked_as_bytes(mask: Masker) -> None:
    words = array("I", range(1000))
    raw = words.tobytes()
    mask(memoryview(words), KEY, 2)
    assert mismatch(words.tobytes(), reference(raw, KEY, 2)) is None
    grid = bytearray(raw[:64])
    mask(memoryview(grid).cast("B", (8, 8)), KEY)
    assert grid == reference(raw[:64], KEY)


@pytest.mark.parametrize("mask", MASKERS)
def test_a_key_may_be_any_bytes_like(mask: Masker) -> None:
    assert masked(mask, b"Hello", bytearray(KEY)) == bytes.fromhex("7f9f4d5158")


def snapshot(target: object) -> object:
    """What a refused call must leave as it was: a view's underlying bytes, else the object."""
    return bytes(target.obj) if isinstance(target, memoryview) else repr(target)


@pytest.mark.parametrize("mask", MASKERS)
@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: b"read-only", BufferError),
        (lambda: memoryview(b"read-only"), BufferError),
        (lambda: memoryview(bytearray(b"0123456789abcdef"))[::2], BufferError),
        (lambda: [1, 2, 3], TypeError),
        (lambda: "text", TypeError),
    ],
    ids=["bytes", "read-only view", "strided view", "list", "str"],
)
def test_refuses_what_it_cannot_change_in_place(
    mask: Masker, make: Callable[[], object], error: type[Exception]
) -> None:
    target = make()
    before = snapshot(target)
    with pytest.raises(error):
        mask(target, KEY, 0)  # type: ignore[arg-type]
    assert snapshot(target) == before


@pytest.mark.parametrize("mask", MASKERS)
def test_refuses_a_bad_key_or_offset(mask: Masker) -> None:
    buffer = bytearray(b"Hello")
    for key in [b"", b"abc", b"abcde"]:
        with pytest.raises(ValueError, match="4 bytes"):
            mask(buffer, key, 0)
    with pytest.raises(ValueError, match="negative"):
        mask(buffer, KEY, -1)
    assert buffer == b"Hello"


@pytest.mark.parametrize("mask", MASKERS)
def test_threads_mask_their_own_buffers(mask: Masker) -> None:
    # The C one releases the GIL for large buffers: concurrent calls must not mix them up.
    data = payload(1 << 20)
    buffers = [bytearray(data) for _ in range(4)]
    threads = [
        threading.Thread(target=mask, args=(buffer, KEY, offset))
        for offset, buffer in enumerate(buffers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for offset, buffer in enumerate(buffers):
        assert mismatch(buffer, reference(data, KEY, offset)) is None, offset


def test_the_c_extension_is_built_in_ci() -> None:
    if not IN_CI:
        pytest.skip("outside CI the C extension is optional")
    assert masking.mask_c is not None
    assert masking.mask is masking.mask_c
    assert masking.IMPLEMENTATION == "c"


def test_falls_back_to_python_without_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail, as for a build without a compiler.
    monkeypatch.setitem(sys.modules, "wsproxy.sansio._speedups", None)
    try:
        importlib.reload(masking)
        assert masking.mask_c is None
        assert masking.IMPLEMENTATION == "python"
        assert masking.mask is masking.mask_py
        assert frames.apply_mask(b"Hello", KEY) == bytes.fromhex("7f9f4d5158")
    finally:
        monkeypatch.undo()
        importlib.reload(masking)
    assert ("python" if masking.mask_c is None else "c") == masking.IMPLEMENTATION


def test_prefers_the_extension_when_built() -> None:
    assert masking.mask is require_extension(masking.mask_c)
    assert masking.IMPLEMENTATION == "c"


@pytest.mark.parametrize("mask_copy", MASK_COPIERS)
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("size", [0, 1, 3, 7, 8, 31, 32, 33, 65, 4097, 70_000])
def test_mask_copy_is_a_masked_copy(mask_copy: MaskCopier, size: int, offset: int) -> None:
    data = payload(size)
    for source in (data, bytearray(data), memoryview(data)):
        got = mask_copy(source, KEY, offset)
        assert type(got) is bytes
        assert mismatch(got, reference(data, KEY, offset)) is None
    assert data == payload(size)  # the source is left alone


@pytest.mark.parametrize("mask_copy", MASK_COPIERS)
def test_mask_copy_refuses_bad_arguments(mask_copy: MaskCopier) -> None:
    with pytest.raises(ValueError):
        mask_copy(b"abc", b"key", 0)
    with pytest.raises(ValueError):
        mask_copy(b"abc", KEY, -1)
    with pytest.raises(TypeError):
        mask_copy("text", KEY, 0)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300), key=st.binary(min_size=4, max_size=4), offset=st.integers(0, 9)
)
def test_mask_copy_twins_agree(data: bytes, key: bytes, offset: int) -> None:
    expected = reference(data, key, offset)
    assert masking.mask_copy_py(data, key, offset) == expected
    if masking.mask_copy_c is not None:
        assert masking.mask_copy_c(data, key, offset) == expected
