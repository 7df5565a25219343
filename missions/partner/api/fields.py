"""Request fields of the partner API that accept exactly what the OpenAPI schema says.

DRF's stock fields coerce: ``CharField`` takes numbers, ``IntegerField`` takes
``"5"`` and ``5.0``, ``FloatField`` and ``BooleanField`` take ``true`` and
``"1"``, ``UUIDField`` takes integers and brace or URN spellings,
``DateTimeField`` takes anything ``datetime.fromisoformat`` reads (dates
without a time, no offset, a space for ``T``). A client that relies on such a
coercion breaks on any other server that follows the published contract, and
a fuzzer that sends what the schema forbids finds the request accepted. These
fields refuse every value of another JSON type or spelling with the field's
ordinary 400 ``validation-error``, so the schema is the whole contract.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tms_console.domain import DomainError

# RFC 3339 §5.6 ``date-time`` (the OpenAPI ``format: date-time``): a full date, ``T``, a full time
# and an offset; any number of fraction digits (microseconds are kept, the rest dropped).
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})", re.ASCII
)
# RFC 9562 text form, the only one ``format: uuid`` admits (no braces, no URN prefix, no bare hex).
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII)
# A price in US dollars: 0.01 to 99,999,999.99, at most two decimals, no sign, no exponent, no
# leading zero. Zero is left out by the pattern itself so the bound needs no separate rule.
MONEY_PATTERN = r"^(?:[1-9][0-9]{0,7}(?:\.[0-9]{1,2})?|0\.(?:[1-9][0-9]?|0[1-9]))$"
MONEY = re.compile(MONEY_PATTERN, re.ASCII)
# Largest value of a bigint id column (PostgreSQL ``bigint``, SQLite ``INTEGER``).
ID_MAX = 2**63 - 1


def rfc3339_parse(value: str) -> datetime:
    """The instant an RFC 3339 ``date-time`` names, in UTC.

    Raises ValueError when ``value`` is not one, OverflowError when it is one that
    cannot be held (its UTC form falls outside the years 0001 to 9999).
    """
    if not RFC3339.fullmatch(value):
        raise ValueError(f"not an RFC 3339 date-time: {value[:40]!r}")
    parsed = datetime.fromisoformat(value.upper())  # Python reads only "T" and "Z"; ValueError for hour 24...
    return parsed.astimezone(UTC)


class StrictCharField(serializers.CharField):
    """A JSON string, stored as sent: no number coerced to text, no whitespace trimmed.

    Keeping surrounding whitespace makes ``minLength`` and ``maxLength`` in the
    schema count exactly what is checked and stored.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    """One of the listed strings, spelt exactly (DRF matches ``str(value)``, so ``1`` would pass as ``"1"``)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a string of digits, not ``5.0``, not ``true``."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data


class StrictFloatField(serializers.FloatField):
    """A finite JSON number (integer or not); never a string or a boolean."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        try:
            number = float(data)
        except OverflowError:  # an integer literal too large for a double
            self.fail("invalid")
        if not math.isfinite(number):
            self.fail("invalid")
        return number


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false``; not ``"yes"``, ``1`` or ``"true"``."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictUUIDField(serializers.UUIDField):
    """A UUID in its hyphenated text form."""

    def to_internal_value(self, data: Any) -> uuid.UUID:
        if not isinstance(data, str) or not UUID_TEXT.fullmatch(data):
            self.fail("invalid", value=data)
        return uuid.UUID(data)


class Rfc3339DateTimeField(serializers.DateTimeField):
    """An RFC 3339 ``date-time`` with its UTC offset, returned as an aware UTC datetime.

    A well-formed instant that cannot be held (year 1 shifted before the
    calendar starts, year 9999 shifted past its end) is a 422 domain refusal:
    the request is valid by the schema, the server cannot represent it.
    """

    def to_internal_value(self, value: Any) -> datetime:
        try:
            return rfc3339_parse(value if isinstance(value, str) else "")
        except ValueError:  # not the grammar, or month 13, hour 24, second 60, offset +24:00 ...
            self.fail("invalid", format="RFC 3339 (YYYY-MM-DDThh:mm:ss[.fff]Z or ±hh:mm)")
        except OverflowError:
            raise DomainError(
                "The instant is outside the years 0001 to 9999 in UTC.", field=self.field_name or ""
            ) from None


@extend_schema_field({"type": "string", "format": "decimal", "pattern": MONEY_PATTERN, "example": "1450.00"})
class MoneyField(serializers.DecimalField):
    """US dollars as a decimal string (``"1450.00"``): 0.01 to 99,999,999.99, at most two decimals.

    A JSON number is refused: binary floating point cannot carry cents exactly.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 10)
        kwargs.setdefault("decimal_places", 2)
        super().__init__(**kwargs)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        # DRF's DecimalField reads "" (and blanks) as null when null is allowed; only null itself is.
        return serializers.Field.validate_empty_values(self, data)  # type: ignore[no-any-return]

    def to_internal_value(self, data: Any) -> Decimal:
        if not isinstance(data, str) or not MONEY.fullmatch(data):
            raise serializers.ValidationError(
                "A price is a decimal string from 0.01 to 99999999.99 with at most two decimals.", code="invalid"
            )
        return Decimal(data)
