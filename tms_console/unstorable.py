"""Strings no column can hold, refused where JSON comes in: U+0000 and lone surrogates.

JSON lets a sender write any code point as an escape, and Python's ``json``
module decodes ``"\\u0000"`` and an unpaired ``"\\ud800"`` into ``str`` values
without complaint. Neither can be stored: PostgreSQL's ``text`` and ``jsonb``
refuse U+0000, and a lone surrogate (U+D800..U+DFFF outside a pair) is not a
Unicode scalar value, so it has no UTF-8 form at all (psycopg, orjson and the
JSON renderer all fail on it). Left alone they surface as a 500 deep in a
service, or sink a whole telemetry batch in the middle of a COPY.

So every JSON input is parsed with ``json_parse`` (raw surrogate bytes, which
strict UTF-8 refuses outright, decode like their escapes so both get the same
answer) and walked with ``unstorable_find``, which names the first bad string
by an RFC 6901 JSON pointer. A request is refused as a whole with a 400
problem (``StorableJSONParser``, the webhook view); the items of a batch
(``per_item``) are left to the telemetry normalizer, which refuses them one by
one so the good ones are stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

UNSTORABLE_CODE = "unstorable_string"


def unstorable_char(text: str) -> str | None:
    """Describe a code point of ``text`` that cannot be stored, or None when it has none.

    C-level scans only: ``in``, ``isascii`` and, for other text, an encode that fails
    exactly on a surrogate.
    """
    if "\x00" in text:
        return "U+0000 (NUL)"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"U+{ord(text[exc.start]):04X} (a lone surrogate)"
    return None


def has_unstorable(text: str) -> bool:
    return unstorable_char(text) is not None


def pointer_of(path: Sequence[str | int]) -> str:
    """RFC 6901: ``~`` and ``/`` escaped in each reference token."""
    return "".join("/" + str(token).replace("~", "~0").replace("/", "~1") for token in path)


def spelled(text: str) -> str:
    """``text`` as a JSON string literal in ASCII: safe to echo, and exact (``"a\\u0000b"``)."""
    return json.dumps(text, ensure_ascii=True)


@dataclass(frozen=True)
class Unstorable:
    """Where the first unstorable string is: a value, or the name of a member of an object."""

    path: tuple[str | int, ...]  # to the value, or to the object whose member name is bad
    char: str  # what is wrong with it, e.g. "U+0000 (NUL)"
    member: str | None = None  # the bad member name (its path is the object's)

    @property
    def pointer(self) -> str:
        return pointer_of(self.path)

    @property
    def detail(self) -> str:
        if self.member is not None:
            # A pointer cannot name this member exactly in storable text: it points at the
            # object, and the detail spells the name with JSON escapes.
            return f"The member name {spelled(self.member)} holds {self.char}, which cannot be stored."
        return f"This string holds {self.char}, which cannot be stored."

    def error(self) -> dict[str, str]:
        """One entry of a problem's ``errors`` list (the shape of ``problem.validation_errors``)."""
        return {"pointer": self.pointer, "detail": self.detail, "code": UNSTORABLE_CODE}

    def reason(self) -> str:
        """The one-line ``field: what is wrong`` reason of the telemetry paths."""
        return f"{self.pointer}: {self.detail}" if self.path else self.detail


def unstorable_find(value: Any, *, per_item: Sequence[str] | None = None) -> Unstorable | None:
    """The first unstorable string in parsed JSON (member names included), or None.

    ``per_item`` is the path of a list whose items are judged one by one
    elsewhere (a telemetry batch's events): its items are not inspected here.
    Iterative, so nesting as deep as the parser allowed cannot overflow the stack.
    """
    skip = tuple(per_item) if per_item is not None else None
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            char = unstorable_char(node)
            if char is not None:
                return Unstorable(path=path, char=char)
        elif isinstance(node, dict):
            children: list[tuple[tuple[str | int, ...], Any]] = []
            for key, child in node.items():
                char = unstorable_char(key)
                if char is not None:
                    return Unstorable(path=path, char=char, member=key)
                children.append(((*path, key), child))
            stack.extend(reversed(children))  # document order: the first bad string is reported
        elif isinstance(node, list):
            if skip is not None and path == skip:
                continue
            stack.extend(((*path, index), child) for index, child in reversed(list(enumerate(node))))
    return None


def may_hold_unstorable(body: bytes) -> bool:
    """False when UTF-8 JSON text cannot decode to an unstorable string: no ``\\u`` escape, no byte 0xED.

    U+0000 can only arrive as an escape (a raw control character is not valid
    JSON) and a surrogate as an escape or as the three bytes ED A0..BF xx.
    A C-level scan, so the hot paths walk the parsed body only when it may matter.
    """
    return b"\\u" in body or b"\xed" in body


def json_parse(body: bytes | str, encoding: str = "utf-8") -> Any:
    """Parse a JSON body; raw surrogate bytes decode like their escapes, so both are found and named.

    Raises ``ValueError`` (``UnicodeDecodeError`` included) on a body that is not JSON and
    ``RecursionError`` on one nested too deeply for the parser.
    """
    if isinstance(body, str):
        text = body
    elif _is_utf8(encoding):
        text = body.decode("utf-8", "surrogatepass")
    else:
        text = body.decode(encoding)
    return json.loads(text, parse_constant=_refuse_constant)


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8")


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259 §6), whatever Python's parser accepts.
    raise ValueError(f"{name} is not a JSON value")


class UnstorableString(APIException):
    """A request refused as a whole for an unstorable string: 400, in the shape of every validation error.

    An ``APIException`` (not ``tms_console.problem.ProblemError``): DRF's views
    module reads ``DEFAULT_PARSER_CLASSES`` when it is imported, so the parser's
    module must not import it (the problem module does). The exception handler
    renders ``problem_code`` and ``problem_extra`` like a ``ProblemError``.
    """

    status_code = 400
    problem_code = "validation-error"

    def __init__(self, found: Unstorable) -> None:
        super().__init__(
            f"The request body holds a string that cannot be stored, at {found.pointer or 'the top level'}."
        )
        self.problem_extra = {"errors": [found.error()]}


class StorableJSONParser(JSONParser):
    """DRF's JSON parser (strict: no NaN), refusing a body with an unstorable string (400, pointing at it).

    A view whose body carries a batch judged item by item names that list in
    ``unstorable_per_item`` (a path, e.g. ``("events",)``).
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        context = parser_context or {}
        encoding = str(context.get("encoding") or settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        try:
            data = json_parse(raw, encoding)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if _is_utf8(encoding) and not may_hold_unstorable(raw):
            return data
        found = unstorable_find(data, per_item=getattr(context.get("view"), "unstorable_per_item", None))
        if found is not None:
            raise UnstorableString(found)
        return data
