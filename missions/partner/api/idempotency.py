"""Idempotency-Key for every mutating partner call (draft-ietf-httpapi-idempotency-key-header).

- no key: 400; a key that is not a short printable string: 400;
- same key, same request (method, path and raw body fingerprint) after the
  first completed: the first answer is replayed byte for byte (status,
  ``Content-Type``, ``Location`` and the body's bytes, stored as rendered when
  the request first ran) with ``Idempotent-Replayed: true``, and the handler
  does not run again;
- same key, another request: 422; same key while the first still runs: 409.

Keys are scoped per OAuth client and kept ``IDEMPOTENCY_RETENTION_HOURS``
(published in capabilities; ``missions.partner.tasks.idempotency_purge`` deletes
expired ones).

The in-flight row is committed before the handler runs, so a concurrent
retry sees it (on PostgreSQL the unique index makes the second insert wait
for the first and then fail). The handler's effect and the completed record
are committed together, so an outcome is never lost after its effect. When
the database connection is lost mid-way (answered 503), the in-flight row is
deleted on a new connection, so the client's retry runs at once instead of
meeting a 409 until the row counts as abandoned.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.template.response import SimpleTemplateResponse
from django.utils import timezone
from rest_framework.request import Request

from missions.models.partner import IdempotencyRecord, IdempotencyStatus
from missions.partner.api.authentication import PartnerPrincipal
from tms_console.health import database_connection_lost
from tms_console.problem import ProblemError

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# The draft makes the key an sf-string; we accept it quoted or bare, printable ASCII, at most 255 characters.
# The schema publishes the same pattern (missions.partner.api.schema).
KEY_PATTERN = r'^"?([\x21\x23-\x7e][\x20\x21\x23-\x7e]{0,254})"?$'
_KEY = re.compile(KEY_PATTERN)
# What a replay repeats besides the status and the body (the draft: the first response, as it was).
_REPLAYED_HEADERS = ("Content-Type", "Location")

Handler = TypeVar("Handler", bound=Callable[..., HttpResponseBase])


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), b"\n", path.encode(), b"\n", body):
        digest.update(part)
    return digest.hexdigest()


def retention() -> timedelta:
    return timedelta(hours=int(settings.IDEMPOTENCY_RETENTION_HOURS))


def _key_from(request: Request) -> str:
    raw = request.headers.get(HEADER)
    if raw is None:
        raise ProblemError(400, "idempotency-key-missing", f"Mutating calls need an {HEADER} header.")
    match = _KEY.match(raw.strip())
    if not match:
        raise ProblemError(400, "idempotency-key-invalid", f"The {HEADER} must be 1-255 printable ASCII characters.")
    return match.group(1)


def _replay(record: IdempotencyRecord) -> HttpResponse:
    """The stored answer as it first went out: a plain response, so nothing renders the body again."""
    headers = dict(record.response_headers or {})
    content_type = headers.pop("Content-Type", None)
    response = HttpResponse(bytes(record.response_content or b""), status=record.response_status or 200)
    if content_type is None:
        del response["Content-Type"]  # the first answer had none (an empty body); do not invent text/html
    else:
        response["Content-Type"] = content_type
    for name, value in headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def _claim(principal: PartnerPrincipal, key: str, fingerprint: str) -> IdempotencyRecord | HttpResponse:
    """Insert the in-flight record, or answer from the record already there."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                client=principal.client, key=key, fingerprint=fingerprint, expires_at=now + retention()
            )
    except IntegrityError:
        pass
    with transaction.atomic():
        existing = IdempotencyRecord.objects.select_for_update().get(client=principal.client, key=key)
        stale_after = timedelta(seconds=int(settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT_SECONDS))
        abandoned = existing.status == IdempotencyStatus.IN_FLIGHT and existing.created_at < now - stale_after
        if existing.expires_at <= now or abandoned:
            # An expired key is free again; an abandoned in-flight one (its worker died) may be retried.
            existing.delete()
            return IdempotencyRecord.objects.create(
                client=principal.client, key=key, fingerprint=fingerprint, expires_at=now + retention()
            )
        if existing.fingerprint != fingerprint:
            raise ProblemError(
                422,
                "idempotency-key-reused",
                f"This {HEADER} was already used for a different request.",
            )
        if existing.status == IdempotencyStatus.IN_FLIGHT:
            raise ProblemError(
                409,
                "idempotency-key-in-flight",
                f"A request with this {HEADER} is still being processed; retry later.",
                headers={"Retry-After": "1"},
            )
        return _replay(existing)


def _rendered(view: Any, request: Request, response: HttpResponseBase) -> HttpResponseBase:
    """The answer as it will go out: negotiated and rendered to its final bytes now, so they can be stored.

    DRF would render it after the view returns; rendering here gives the same
    bytes (``dispatch`` finalizes it again, and a rendered response is not rendered twice).
    """
    response = view.finalize_response(request, response)
    if isinstance(response, SimpleTemplateResponse):
        response.render()
    return response


def _store(record_pk: int, response: HttpResponseBase) -> None:
    # Bytes, not parsed JSON: a JSON column would reorder keys and could not hold every string (U+0000).
    assert isinstance(response, HttpResponse), "an idempotent handler answers with a complete body"
    IdempotencyRecord.objects.filter(pk=record_pk).update(
        status=IdempotencyStatus.COMPLETED,
        response_status=response.status_code,
        response_content=response.content,
        response_headers={h: response[h] for h in _REPLAYED_HEADERS if h in response},
    )


def _release_after_connection_loss(record_pk: int) -> None:
    """Delete the in-flight record of a request whose connection died, if it is still in flight."""
    if connection.in_atomic_block:
        return  # an outer transaction (a test) owns the connection
    for _attempt in range(3):
        try:
            connection.close()  # the broken connection; the next query opens (or borrows) a new one
            IdempotencyRecord.objects.filter(pk=record_pk, status=IdempotencyStatus.IN_FLIGHT).delete()
            return
        except DatabaseError:
            continue
    # Still unreachable: the key is taken as abandoned after IDEMPOTENCY_IN_FLIGHT_TIMEOUT_SECONDS.
    log.warning("idempotency key left in flight: the database is unreachable", extra={"record": record_pk})


def idempotent(handler: Handler) -> Handler:
    """Decorate a DRF view method (after authentication) to apply the Idempotency-Key rules."""

    @functools.wraps(handler)
    def wrapped(view: Any, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        principal = request.user
        assert isinstance(principal, PartnerPrincipal)
        key = _key_from(request)
        fingerprint = request_fingerprint(request.method or "POST", request.get_full_path(), request.body)
        claimed = _claim(principal, key, fingerprint)
        if isinstance(claimed, HttpResponse):
            return claimed
        response: HttpResponseBase | None = None
        try:
            with transaction.atomic():
                response = _rendered(view, request, handler(view, request, *args, **kwargs))
                if response.status_code < 500:
                    _store(claimed.pk, response)
        except Exception as exc:
            if database_connection_lost(exc):
                # The effect did not commit (or, if the commit itself lost its answer, the record says
                # COMPLETED and a retry replays it). Free the key on a new connection so the client's
                # retry runs; the answer is a 503 (tms_console.health.DatabaseUnavailableMiddleware).
                _release_after_connection_loss(claimed.pk)
                raise
            if (
                response is not None
                and IdempotencyRecord.objects.filter(pk=claimed.pk, status=IdempotencyStatus.COMPLETED).exists()
            ):
                # The effect and its record committed; what failed is an after-commit hook. The
                # client gets the committed outcome (a retry would replay it), the failure is logged.
                log.exception("after-commit hook failed", extra={"path": request.path})
                return response
            # The effect rolled back; record a refusal (4xx) so a retry gets the same answer,
            # or free the key after a server error so the client can retry.
            try:
                response = _rendered(view, request, view.handle_exception(exc))
            except Exception:
                IdempotencyRecord.objects.filter(pk=claimed.pk).delete()
                raise
            if response.status_code < 500:
                with transaction.atomic():
                    _store(claimed.pk, response)
            else:
                IdempotencyRecord.objects.filter(pk=claimed.pk).delete()
            return response
        return response

    return cast(Handler, wrapped)
