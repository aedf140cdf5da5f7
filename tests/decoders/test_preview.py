"""The one-line renderings the summaries share: bounded in width and in work, bytes shown
safely, a codec's own types by their repr."""

from __future__ import annotations

import cbor2

from wsproxy.decoders.preview import MAX_ITEMS, WIDTH, clip, render, size


def test_plain_values_read_as_json() -> None:
    assert render({"a": [1, 2.5, None, True], "b": "é"}) == '{"a": [1, 2.5, null, true], "b": "é"}'
    assert render([]) == "[]" and render({}) == "{}"
    assert size(12) == "12 B"


def test_bytes_keep_printable_ascii_and_escape_the_rest() -> None:
    assert render(b'ok"\\\x00\xff') == 'b"ok\\x22\\x5c\\x00\\xff"'
    assert render(bytearray(b"a")) == 'b"a"' and render(memoryview(b"b")) == 'b"b"'


def test_containers_are_cut_after_max_items() -> None:
    items = list(range(MAX_ITEMS + 5))
    assert render(items) == "[" + ", ".join(map(str, items[:MAX_ITEMS])) + ", …]"
    mapping = {str(i): i for i in items}
    shown = ", ".join(f'"{i}": {i}' for i in items[:MAX_ITEMS])
    assert render(mapping) == "{" + shown + ", …}"
    assert render(items[:MAX_ITEMS]) == "[" + ", ".join(map(str, items[:MAX_ITEMS])) + "]"


def test_nesting_is_cut_at_a_depth() -> None:
    deep: object = 1
    for _ in range(20):
        deep = [deep]
    assert render(deep) == "[" * 10 + "…" + "]" * 10
    deep_map: object = 1
    for _ in range(20):
        deep_map = {"k": deep_map}
    assert render(deep_map, width=200) == '{"k": ' * 9 + "{…" + "}" * 10


def test_width_bounds_the_text_and_the_work() -> None:
    long = ["x" * 1000] * 3 + [{"y": "z" * 1000}]
    text = render(long)
    assert len(text) == WIDTH and text.endswith("…") and text.startswith('["xxx')
    assert len(render("é" * 500, width=10)) == 10
    assert clip("short") == "short" and clip("abcdef", 4) == "abc…"


def test_a_codecs_own_type_is_its_repr_clipped() -> None:
    tag = cbor2.CBORTag(4000, "x" * 500)
    assert render([tag], width=30) == clip("[" + repr(tag), 30)
    assert render(cbor2.CBORTag(1, 2)) == repr(cbor2.CBORTag(1, 2))
