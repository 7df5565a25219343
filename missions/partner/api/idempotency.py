"""Idempotency-Key for every mutating partner call (draft-ietf-httpapi-idempotency-key-header).

- no key: 400; a key that is not a short printable string: 400;
- same key, same request (method, path and raw body fingerprint) after the
  first completed: the first status and body are replayed with
  ``Idempotent-Replayed: true`` and the handler does not run again;
- same key, another request: 422; same key while the first still runs: 409.

Keys are scoped per OAuth client and kept ``IDEMPOTENCY_RETENTION_HOURS``
(published in capabilities; ``missions.partner.tasks.idempotency_purge`` deletes
expired ones).

The in-flight row is committed before the handler runs, so a concurrent
retry sees it (on PostgreSQL the unique index makes the second insert wait
for the first and then fail). The handler's effect and the completed record
are committed together, so an outcome is never lost after its effect.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from missions.models.partner import IdempotencyRecord, IdempotencyStatus
from missions.partner.api.authentication import PartnerPrincipal
from tms_console.problem import ProblemError

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# The draft makes the key an sf-string; we accept it quoted or bare, printable ASCII, at most 255 characters.
# The schema publishes the same pattern (missions.partner.api.schema).
KEY_PATTERN = r'^"?([\x21\x23-\x7e][\x20\x21\x23-\x7e]{0,254})"?$'
_KEY = re.compile(KEY_PATTERN)
# Content-Type is not taken from the headers: before rendering it still holds the HttpResponse default.
_REPLAYED_HEADERS = ("Location",)

Handler = TypeVar("Handler", bound=Callable[..., Response])


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


def _replay(record: IdempotencyRecord) -> Response:
    headers = {k: v for k, v in (record.response_headers or {}).items() if k != "Content-Type"}
    headers[REPLAYED_HEADER] = "true"
    content_type = (record.response_headers or {}).get("Content-Type")
    return Response(
        record.response_body, status=record.response_status or 200, headers=headers, content_type=content_type
    )


def _claim(principal: PartnerPrincipal, key: str, fingerprint: str) -> IdempotencyRecord | Response:
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


def _storable(data: Any) -> Any:
    # PostgreSQL's jsonb cannot hold U+0000, which a validation error may echo back from the request.
    text = json.dumps(data, cls=DjangoJSONEncoder).replace("\\u0000", "\\ufffd")
    return json.loads(text)


def _store(record_pk: int, response: Response) -> None:
    headers = {h: response[h] for h in _REPLAYED_HEADERS if h in response}
    if response.content_type:
        headers["Content-Type"] = response.content_type
    IdempotencyRecord.objects.filter(pk=record_pk).update(
        status=IdempotencyStatus.COMPLETED,
        response_status=response.status_code,
        response_body=_storable(response.data),
        response_headers=headers,
    )


def idempotent(handler: Handler) -> Handler:
    """Decorate a DRF view method (after authentication) to apply the Idempotency-Key rules."""

    @functools.wraps(handler)
    def wrapped(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        principal = request.user
        assert isinstance(principal, PartnerPrincipal)
        key = _key_from(request)
        fingerprint = request_fingerprint(request.method or "POST", request.get_full_path(), request.body)
        claimed = _claim(principal, key, fingerprint)
        if isinstance(claimed, Response):
            return claimed
        response: Response | None = None
        try:
            with transaction.atomic():
                response = handler(view, request, *args, **kwargs)
                if response.status_code < 500:
                    _store(claimed.pk, response)
        except Exception as exc:
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
                response = view.handle_exception(exc)
            except Exception:
                IdempotencyRecord.objects.filter(pk=claimed.pk).delete()
                raise
            if response.status_code < 500:
                with transaction.atomic():
                    _store(claimed.pk, response)
            else:
                IdempotencyRecord.objects.filter(pk=claimed.pk).delete()
            return cast(Response, response)
        return response

    return cast(Handler, wrapped)
