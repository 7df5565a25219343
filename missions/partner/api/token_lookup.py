"""An access token with its application, partner client, carrier and certificate binding, in one statement.

Every partner request resolves its bearer token. The ORM's ``select_related``
over those five tables spent longer building its SQL than PostgreSQL spent
running it (more than a quarter of a worker's CPU while telemetry batches
arrived), so the statement and the decoding of each column are built once per
process from the models' fields, and each request only runs it. The objects
come back as the ORM would give them: every concrete field loaded and converted
by the backend's and the field's own converters, each relation cached, an
absent partner client or binding cached as absent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Model
from oauth2_provider.models import AccessToken, Application

from missions.models import Carrier
from missions.models.partner import PartnerClient, TokenCertificateBinding

Converter = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class _Part:
    model: type[Model]
    alias: str
    start: int
    attnames: tuple[str, ...]
    converters: tuple[tuple[int, tuple[Converter, ...], Any], ...]  # (column offset, converters, expression)
    pk_offset: int

    def build(self, row: tuple[Any, ...]) -> Model | None:
        values = list(row[self.start : self.start + len(self.attnames)])
        if values[self.pk_offset] is None:  # no row joined
            return None
        for offset, converters, expression in self.converters:
            value = values[offset]
            for convert in converters:
                value = convert(value, expression, connection)
            values[offset] = value
        return self.model.from_db(connection.alias, list(self.attnames), values)


@dataclass(frozen=True)
class _Statement:
    vendor: str
    sql: str
    token: _Part
    application: _Part
    partner: _Part
    carrier: _Part
    binding: _Part


_JOINS = (
    # (model, alias, join condition); the token is the first and is not joined.
    (Application, "a", "a.{application_pk} = t.{application_id}"),
    (PartnerClient, "p", "p.{application_id_p} = a.{application_pk}"),
    (Carrier, "c", "c.{carrier_pk} = p.{carrier_id}"),
    (TokenCertificateBinding, "b", "b.{access_token_id} = t.{token_pk}"),
)

_statement: _Statement | None = None


def _part(model: type[Model], alias: str, start: int) -> tuple[_Part, list[str]]:
    fields = list(model._meta.concrete_fields)  # in their order: ``from_db`` takes all of them positionally
    columns = [f"{alias}.{connection.ops.quote_name(str(f.column))}" for f in fields]
    converters = []
    for offset, f in enumerate(fields):
        expression = f.get_col(alias)
        found = tuple(connection.ops.get_db_converters(expression) + expression.get_db_converters(connection))
        if found:
            converters.append((offset, found, expression))
    pk_offset = next(i for i, f in enumerate(fields) if f.primary_key)
    return _Part(model, alias, start, tuple(f.attname for f in fields), tuple(converters), pk_offset), columns


def _build() -> _Statement:
    q = connection.ops.quote_name
    parts: list[_Part] = []
    columns: list[str] = []
    for model, alias in ((AccessToken, "t"), *((m, a) for m, a, _ in _JOINS)):
        part, cols = _part(model, alias, len(columns))
        parts.append(part)
        columns += cols
    names = {
        "token_pk": q(str(AccessToken._meta.pk.column)),
        "application_pk": q(str(Application._meta.pk.column)),
        "carrier_pk": q(str(Carrier._meta.pk.column)),
        "application_id": q(AccessToken._meta.get_field("application").column),
        "application_id_p": q(PartnerClient._meta.get_field("application").column),
        "carrier_id": q(PartnerClient._meta.get_field("carrier").column),
        "access_token_id": q(TokenCertificateBinding._meta.get_field("access_token").column),
    }
    joins = " ".join(
        f"LEFT JOIN {q(model._meta.db_table)} {alias} ON {condition.format(**names)}"
        for model, alias, condition in _JOINS
    )
    checksum = q(AccessToken._meta.get_field("token_checksum").column)
    # Every name comes from the models' own metadata, quoted by the backend; the checksum is a parameter.
    table = q(AccessToken._meta.db_table)
    sql = f"SELECT {', '.join(columns)} FROM {table} t {joins} WHERE t.{checksum} = %s LIMIT 1"  # noqa: S608  # nosec B608
    return _Statement(connection.vendor, sql, *parts)


def token_with_client(checksum: str) -> AccessToken | None:
    """The token whose SHA-256 is ``checksum``, its relations loaded; None when there is none."""
    global _statement
    statement = _statement
    if statement is None or statement.vendor != connection.vendor:
        statement = _statement = _build()
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, [checksum])
        row = cursor.fetchone()
    if row is None:
        return None
    token = statement.token.build(row)
    assert isinstance(token, AccessToken)
    application = statement.application.build(row)
    AccessToken._meta.get_field("application").set_cached_value(token, application)
    binding = statement.binding.build(row)
    TokenCertificateBinding._meta.get_field("access_token").remote_field.set_cached_value(token, binding)
    if binding is not None:
        TokenCertificateBinding._meta.get_field("access_token").set_cached_value(binding, token)
    if application is None:
        return token
    partner = statement.partner.build(row)
    PartnerClient._meta.get_field("application").remote_field.set_cached_value(application, partner)
    if partner is not None:
        PartnerClient._meta.get_field("application").set_cached_value(partner, application)
        PartnerClient._meta.get_field("carrier").set_cached_value(partner, statement.carrier.build(row))
    return token
