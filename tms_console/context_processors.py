"""Template context shared by every console page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tms_console.roles import user_roles


def console(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    roles = user_roles(user) if user is not None and user.is_authenticated else set()
    return {"user_roles": roles}
