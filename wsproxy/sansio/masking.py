"""Masking (RFC 6455 section 5.3): XOR a payload, in place, with the frame's 4-byte key.

Two implementations with one contract, ``mask(buffer, key, offset=0)``: ``buffer`` is any
writable, contiguous buffer (a ``bytearray``, a writable ``memoryview``), ``key`` the 4-byte
masking key, ``offset`` where ``buffer`` starts within its frame's payload (so a frame that
arrives in pieces is unmasked piece by piece with the running offset). Masking is its own
inverse: the same call masks and unmasks.

- ``wsproxy.sansio._speedups.mask``: C, 8 bytes per step, the GIL released for large buffers.
  Built by ``pip install`` when a compiler is there (an optional extension: pyproject.toml).
- ``mask_py`` below: the pure-Python fallback. Python has no vectorised XOR over bytes, but
  its big integers are one: the buffer read as one integer, XORed with the key repeated, is
  written back. In pieces of ``CHUNK`` bytes, because one integer the size of the whole
  buffer falls out of the CPU caches (bench/mask_bench.py: about 600 MiB/s in 16 KiB pieces
  against 250 MiB/s whole, for 1 MiB; a per-byte loop manages about 10 MiB/s).

``mask`` is the C one when it is built, else ``mask_py``; ``IMPLEMENTATION`` says which.
``mask_copy(data, key, offset=0)`` returns a masked copy instead (C: in one pass, which halves
what masking a large frame costs; else a copy masked in place).
"""

from __future__ import annotations

from collections.abc import Callable

Masker = Callable[[bytearray | memoryview, bytes, int], None]

# Bytes per big-integer XOR in mask_py: 4 KiB to 32 KiB measure alike (bench/mask_bench.py),
# beyond that the integers outgrow the L1/L2 caches. A multiple of 4, so every piece starts
# at key[0].
CHUNK = 16 * 1024


def mask_py(buffer: bytearray | memoryview, key: bytes, offset: int = 0) -> None:
    """XOR ``buffer`` in place with ``key``, starting at byte ``offset`` of the key cycle."""
    if len(key) != 4:
        raise ValueError(f"mask() key must be 4 bytes, not {len(key)}")
    if offset < 0:
        raise ValueError("mask() offset must not be negative")
    view = memoryview(buffer)  # TypeError for what is not a buffer, as in C
    # BufferError, as PyObject_GetBuffer(PyBUF_WRITABLE) raises in C.
    if view.readonly:
        raise BufferError("mask() needs a writable buffer")
    if not view.c_contiguous:
        raise BufferError("mask() needs a C-contiguous buffer")
    view = view.cast("B")  # bytes, whatever the format (array('I'), a 2-D view)
    size = len(view)
    shift = offset % 4
    if shift:
        key = key[shift:] + key[:shift]
    if size <= CHUNK:
        repeated = (key * (size // 4 + 1))[:size]
        value = int.from_bytes(view, "little") ^ int.from_bytes(repeated, "little")
        view[:] = value.to_bytes(size, "little")
        return
    # Little-endian, so the first bytes of the key pattern are its low bits: the last,
    # shorter piece XORs with the pattern cut by a bit mask instead of a new pattern.
    pattern = int.from_bytes(key * (CHUNK // 4), "little")
    end = size - size % CHUNK
    for start in range(0, end, CHUNK):
        piece = view[start : start + CHUNK]
        piece[:] = (int.from_bytes(piece, "little") ^ pattern).to_bytes(CHUNK, "little")
    if end < size:
        rest = size - end
        tail = view[end:]
        value = int.from_bytes(tail, "little") ^ (pattern & ((1 << (8 * rest)) - 1))
        tail[:] = value.to_bytes(rest, "little")


def mask_copy_py(data: bytes | bytearray | memoryview, key: bytes, offset: int = 0) -> bytes:
    """``data`` XORed with ``key`` from byte ``offset`` of the key cycle, as new bytes."""
    buffer = bytearray(data)
    mask(buffer, key, offset)
    return bytes(buffer)


MaskCopier = Callable[[bytes | bytearray | memoryview, bytes, int], bytes]

mask_c: Masker | None
mask_copy_c: MaskCopier | None
try:
    from wsproxy.sansio._speedups import mask as mask_c
    from wsproxy.sansio._speedups import mask_copy as mask_copy_c
except ImportError:  # built without a compiler: the pure fallback serves
    mask_c = None
    mask_copy_c = None

mask: Masker = mask_c if mask_c is not None else mask_py
mask_copy: MaskCopier = mask_copy_c if mask_copy_c is not None else mask_copy_py
IMPLEMENTATION = "c" if mask_c is not None else "python"
