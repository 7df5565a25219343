"""View guards for console pages: one permission check, a friendly 403 page.

Views check a console permission (``tms_console.roles``), never a group name.
The OTP gate (``RequireOTPMiddleware``) has already refused anonymous and
password-only sessions before a guard runs; the guards re-check verification
anyway so a view stays safe if it is ever mounted outside the gate.

Usage::

    from tms_console.permissions import console_permission_required, ConsolePermissionMixin
    from tms_console.roles import DISPATCH_LOADS

    @console_permission_required(DISPATCH_LOADS)
    def shipment_create_view(request): ...

    class ShipmentCreateView(ConsolePermissionMixin, FormView):
        console_permission = DISPATCH_LOADS
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.template import loader

from tms_console.roles import PERMISSIONS, perm

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., HttpResponse])


def _codenames(codename: str | Iterable[str]) -> tuple[str, ...]:
    names = (codename,) if isinstance(codename, str) else tuple(codename)
    for name in names:
        # A typo here would silently deny everyone; fail loudly at import time instead.
        if name.split(".", 1)[-1] not in PERMISSIONS:
            raise ValueError(f"unknown console permission {name!r}; known: {sorted(PERMISSIONS)}")
    return names


def _full(name: str) -> str:
    return name if "." in name else perm(name)


def is_verified(user: AbstractBaseUser | AnonymousUser) -> bool:
    """True when the user signed in with a password AND a one-time code in this session.

    ``django_otp.middleware.OTPMiddleware`` attaches ``is_verified`` to
    ``request.user``; a user object that did not pass through it counts as
    not verified.
    """
    check = getattr(user, "is_verified", None)
    return bool(user.is_authenticated and check is not None and check())


def user_has_console_permission(user: AbstractBaseUser | AnonymousUser, codename: str | Iterable[str]) -> bool:
    """True when the user is OTP-verified and holds every named console permission."""
    if not is_verified(user):
        return False
    return all(cast(Any, user).has_perm(_full(name)) for name in _codenames(codename))


def permission_denied(request: HttpRequest, codenames: tuple[str, ...] = ()) -> HttpResponse:
    """Render templates/403.html with the permission(s) that were missing."""
    missing = [PERMISSIONS.get(name.split(".", 1)[-1], name) for name in codenames]
    body = loader.render_to_string("403.html", {"missing_permissions": missing}, request=request)
    return HttpResponse(body, status=403)


def _refuse(request: HttpRequest, names: tuple[str, ...]) -> HttpResponse:
    if not is_verified(request.user):
        # Same answer the gate gives: go and finish signing in.
        return redirect_to_login(request.get_full_path(), resolve_url(settings.LOGIN_URL))
    return permission_denied(request, names)


def console_permission_required(codename: str | Iterable[str]) -> Callable[[ViewFunc], ViewFunc]:
    """Decorator for function views: 403 (friendly page) unless the verified user has the permission(s).

    ``codename`` is a bare console codename (``"dispatch_loads"``) or a list of them;
    ``"tms_console.dispatch_loads"`` is accepted too.
    """
    names = _codenames(codename)

    def decorator(view: ViewFunc) -> ViewFunc:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not user_has_console_permission(request.user, names):
                return _refuse(request, names)
            return view(request, *args, **kwargs)

        return cast(ViewFunc, wrapped)

    return decorator


# Short alias; same behaviour.
role_required = console_permission_required


class ConsolePermissionMixin:
    """Class-based-view guard: set ``console_permission`` to a codename or a list of codenames.

    Put it first in the bases so the check runs before any other ``dispatch``.
    """

    console_permission: str | Iterable[str] = ()

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        names = _codenames(self.console_permission)
        if not names:
            raise ValueError(f"{type(self).__name__} must set console_permission")
        if not user_has_console_permission(request.user, names):
            return _refuse(request, names)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc,no-any-return]
