"""Query parameters of the partner API: parsed strictly, and described in the schema from the same bounds.

A parameter given twice, an empty value, a number spelt any other way than
ASCII digits with an optional minus, a value out of its bounds or outside its
enum is a 400 ``validation-error`` naming the parameter. Nothing is silently
replaced by a default, so what the schema says is what the server does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from tms_console.problem import ProblemError

_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)


def query_problem(name: str, detail: str, code: str = "invalid") -> ProblemError:
    return ProblemError(
        400,
        "validation-error",
        f"Invalid '{name}' parameter.",
        errors=[{"pointer": "", "detail": detail, "code": code, "parameter": name}],
    )


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise query_problem(name, f"{name} may be given only once", "repeated")
    return str(values[0])


@dataclass(frozen=True)
class IntegerQuery:
    """An integer query parameter within ``[minimum, maximum]`` (``maximum`` None: unbounded)."""

    name: str
    minimum: int
    maximum: int | None
    description: str
    required: bool = False

    def bounds_text(self) -> str:
        if self.maximum is None:
            return f"an integer of at least {self.minimum}"
        return f"an integer from {self.minimum} to {self.maximum}"

    def parse(self, request: Request, default: int | None = None) -> int:
        """The value, ``default`` when absent; a required parameter passes no default."""
        raw = _single(request, self.name)
        if raw is None:
            if default is None:
                raise query_problem(self.name, f"{self.name} is required", "required")
            return default
        if not _INTEGER.fullmatch(raw):
            raise query_problem(self.name, f"{self.name} must be {self.bounds_text()}")
        value = int(raw)
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise query_problem(self.name, f"{self.name} must be {self.bounds_text()}")
        return value

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer", "minimum": self.minimum}
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema

    def parameter(self) -> OpenApiParameter:
        return OpenApiParameter(
            self.name, self.schema(), OpenApiParameter.QUERY, required=self.required, description=self.description
        )


@dataclass(frozen=True)
class ChoiceQuery:
    """An optional query parameter that is one of ``choices``."""

    name: str
    choices: Sequence[str]
    description: str

    def parse(self, request: Request) -> str | None:
        raw = _single(request, self.name)
        if raw is None:
            return None
        if raw not in self.choices:
            raise query_problem(
                self.name, f"{self.name} must be one of {', '.join(self.choices)}", code="invalid_choice"
            )
        return raw

    def parameter(self) -> OpenApiParameter:
        return OpenApiParameter(
            self.name,
            {"type": "string", "enum": list(self.choices)},
            OpenApiParameter.QUERY,
            required=False,
            description=self.description,
        )
