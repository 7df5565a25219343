"""Hypothesis strategies that put a string no column can store (U+0000, a lone surrogate) into JSON.

``injected(base)`` puts one such string at a random place of a copy of
``base``: a string value, a member name, or a new member (holding it at some
depth) of any object, and says where it went as the path an RFC 6901 pointer
should name (the object, for a member name). ``encode`` writes the body with
JSON escapes or, for surrogates, as the raw bytes strict UTF-8 refuses.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

clean_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=10)
unstorable_char = st.just("\x00") | st.integers(0xD800, 0xDFFF).map(chr)
bad_text = st.tuples(clean_text, unstorable_char, clean_text).map("".join)
json_leaf = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | clean_text
free_json = st.dictionaries(
    clean_text,
    st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(clean_text, inner, max_size=3)),
    max_size=4,
)

Path = tuple[str | int, ...]


def places(value: Any, path: Path = ()) -> list[tuple[str, Path]]:
    """Where a string can go: ("value", path of a string), ("key", path of a member), ("new", path of an object)."""
    found: list[tuple[str, Path]] = []
    if isinstance(value, str):
        found.append(("value", path))
    elif isinstance(value, dict):
        found.append(("new", path))
        for key, child in value.items():
            found.append(("key", (*path, key)))
            found.extend(places(child, (*path, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(places(child, (*path, index)))
    return found


def at(value: Any, path: Path) -> Any:
    for token in path:
        value = value[token]
    return value


def pointer(path: Path) -> str:
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in path)


@dataclass
class Injected:
    body: Any
    path: Path  # where the unstorable string is: the pointer's path (the object, for a member name)


@st.composite
def injected(draw: st.DrawFn, base: Any) -> Injected:
    body = copy.deepcopy(base)
    kind, path = draw(st.sampled_from(places(body)))
    bad = draw(bad_text)
    if kind == "value":
        parent = at(body, path[:-1]) if path else None
        if parent is None:
            return Injected(body=bad, path=())
        parent[path[-1]] = bad
        return Injected(body=body, path=path)
    if kind == "key":
        parent, old = at(body, path[:-1]), path[-1]
        parent[bad] = parent.pop(old)
        return Injected(body=body, path=path[:-1])
    target = at(body, path)
    if draw(st.booleans()):  # a new member with a bad name
        target[bad] = draw(json_leaf)
        return Injected(body=body, path=path)
    # Not "events": a new list by that name would turn a single delivery into a batch.
    name = draw(clean_text.filter(lambda k: k not in target and k != "events"))
    value, inner = draw(
        st.sampled_from(
            [(bad, ()), ([bad], (0,)), ({"note": bad}, ("note",)), ([1, {"deep": [None, bad]}], (1, "deep", 1))]
        )
    )
    target[name] = value
    return Injected(body=body, path=(*path, name, *inner))


def encode(body: Any, raw: bool) -> bytes:
    # Raw: a surrogate as the three bytes it would be in UTF-8 if it were allowed (U+0000 is
    # escaped either way: a raw control character is not JSON).
    if raw:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(body).encode("ascii")
