"""Finding unstorable strings (U+0000, lone surrogates) in parsed JSON, and naming them with a JSON pointer."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError

from tests.unstorable import at, encode, free_json, injected
from tms_console.unstorable import (
    StorableJSONParser,
    UnstorableString,
    json_parse,
    may_hold_unstorable,
    pointer_of,
    unstorable_char,
    unstorable_find,
)


def test_what_cannot_be_stored() -> None:
    assert unstorable_char("plain ascii") is None
    assert unstorable_char("Größe, 東京, 😀") is None  # a pair decoded from "\ud83d\ude00" is one code point
    assert unstorable_char("a\x00b") == "U+0000 (NUL)"
    assert unstorable_char("é\ud800") == "U+D800 (a lone surrogate)"
    assert unstorable_char("\udfff") == "U+DFFF (a lone surrogate)"


def test_escapes_and_raw_surrogate_bytes_parse_alike() -> None:
    assert json_parse(b'"\\ud800"') == json_parse(b'"\xed\xa0\x80"') == "\ud800"
    assert json_parse(b'"\\ud83d\\ude00"') == "😀"
    with pytest.raises(ValueError):
        json_parse(b'"\xff"')  # other invalid UTF-8 stays invalid
    with pytest.raises(ValueError):
        json_parse(b"[NaN]")  # not JSON, whatever Python's parser allows
    with pytest.raises(RecursionError):
        json_parse(b"[" * 100_000)


def test_the_pointer_names_values_and_the_object_of_a_bad_member_name() -> None:
    found = unstorable_find({"a": [1, {"b/c~": "x\x00"}]})
    assert found is not None and (found.pointer, found.member) == ("/a/1/b~1c~0", None)
    found = unstorable_find({"a": {"ok": 1, "k\ud800": 2}})
    assert found is not None and (found.pointer, found.member) == ("/a", "k\ud800")
    assert '"k\\ud800"' in found.detail  # the name spelled with JSON escapes, storable itself
    assert unstorable_find("\x00") is not None and unstorable_find("\x00").pointer == ""  # type: ignore[union-attr]


def test_per_item_lists_are_left_to_whoever_judges_their_items() -> None:
    body = {"events": [{"vehicle_id": "\x00"}], "note": "fine"}
    assert unstorable_find(body, per_item=("events",)) is None
    found = unstorable_find({**body, "note": "\x00"}, per_item=("events",))
    assert found is not None and found.pointer == "/note"
    # Only a list at that exact path is skipped.
    found = unstorable_find({"events": {"0": "\x00"}}, per_item=("events",))
    assert found is not None and found.pointer == "/events/0"


def test_deep_nesting_does_not_overflow_the_walk() -> None:
    value: Any = "\x00"
    for _ in range(5000):
        value = [value]
    found = unstorable_find(value)
    assert found is not None and found.path == (0,) * 5000


def test_the_byte_scan_is_never_wrong_about_a_clean_body() -> None:
    assert not may_hold_unstorable(b'{"a": "plain", "b": [1, 2]}')
    assert may_hold_unstorable(b'{"a": "\\u0000"}')
    assert may_hold_unstorable(b'{"a": "\xed\xa0\x80"}')


@settings(max_examples=300, deadline=None)
@given(data=st.data(), base=free_json, raw=st.booleans())
def test_the_one_bad_string_is_found_where_it_was_put(data: st.DataObject, base: dict[str, Any], raw: bool) -> None:
    case = data.draw(injected({"body": base}))
    body = encode(case.body, raw)
    assert may_hold_unstorable(body)
    parsed = json_parse(body)
    found = unstorable_find(parsed)
    assert found is not None
    assert found.path == case.path
    assert found.pointer == pointer_of(case.path)
    assert isinstance(at(parsed, found.path), (str, dict))
    # What is sent back can itself be stored and rendered.
    json.dumps(found.error(), ensure_ascii=False).encode("utf-8")
    assert "\x00" not in json.dumps(found.error(), ensure_ascii=False)


@settings(max_examples=200, deadline=None)
@given(base=free_json, raw=st.booleans())
def test_clean_json_is_never_refused(base: dict[str, Any], raw: bool) -> None:
    body = encode(base, raw)
    assert unstorable_find(json_parse(body)) is None


def test_the_parser_refuses_with_the_pointer_and_honours_the_views_batch() -> None:
    parser = StorableJSONParser()
    with pytest.raises(UnstorableString) as refused:
        parser.parse(io.BytesIO(b'{"detail": "x\\u0000"}'), parser_context={})
    assert refused.value.problem_extra == {
        "errors": [
            {
                "pointer": "/detail",
                "detail": "This string holds U+0000 (NUL), which cannot be stored.",
                "code": "unstorable_string",
            }
        ]
    }

    class BatchView:
        unstorable_per_item = ("events",)

    body = b'{"events": [{"vehicle_id": "\xed\xa0\x80"}]}'
    parsed = parser.parse(io.BytesIO(body), parser_context={"view": BatchView()})
    assert parsed == {"events": [{"vehicle_id": "\ud800"}]}
    with pytest.raises(ParseError):
        parser.parse(io.BytesIO(b"[" * 100_000), parser_context={})
