"""relay.strictjson: what is strict, and how Varg's odd JSON is made so."""

from __future__ import annotations

import json

import pytest

from relay.strictjson import clean, is_strict, loads_lenient


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), -float("inf"), {"a": [float("nan")]}, "\ud800", {"\udc00": 1},
    ["ok", {"deep": "x\udbff"}],
])
def test_what_cannot_be_written_as_strict_json(value: object) -> None:
    assert not is_strict(value)
    assert is_strict(clean(value))


@pytest.mark.parametrize("value", [None, 1e308, "😀", "\ufffd", {"a": [1, "b", None]}, ""])
def test_strict_values_are_left_alone(value: object) -> None:
    assert is_strict(value)
    assert clean(value) == value


@pytest.mark.parametrize("raw, expected", [
    (b'{"p": NaN, "q": Infinity, "r": -Infinity}', {"p": None, "q": None, "r": None}),
    (b'{"big": 1e999, "small": -1e999, "fine": 1e308}', {"big": None, "small": None,
                                                         "fine": 1e308}),
    (b'{"s": "\\ud800", "t": "\\ud83d\\ude00"}', {"s": "\ufffd", "t": "😀"}),
    (b'{"s": "\xed\xa0\x80", "u": "\xff"}', {"s": "\ufffd\ufffd\ufffd", "u": "\ufffd"}),
    (b'\xef\xbb\xbf{"bom": true}', {"bom": True}),
])
def test_lenient_loading_makes_upstream_json_strict(raw: bytes, expected: object) -> None:
    value = loads_lenient(raw)
    assert value == expected
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("raw", [b"", b"{", b"nope", b'{"a": 1} x'])
def test_lenient_loading_still_refuses_what_is_not_json(raw: bytes) -> None:
    with pytest.raises(ValueError):
        loads_lenient(raw)
