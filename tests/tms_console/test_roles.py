"""Roles: each persona holds exactly its permissions; the view guards answer 403 or send to login."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from django.views import View

from tests.conftest import verified_client
from tms_console.permissions import ConsolePermissionMixin, console_permission_required, user_has_console_permission
from tms_console.roles import (
    ADMIN,
    CARRIER_MANAGER,
    DISPATCH_LOADS,
    DISPATCHER,
    MANAGE_CARRIERS,
    MANAGE_PLATFORM,
    MANAGE_SLA,
    ON_CALL,
    PERMISSIONS,
    READ_ONLY,
    RESPOND_INCIDENTS,
    ROLE_PERMISSIONS,
    SLA_MANAGER,
    VIEW_CONSOLE,
    perm,
    roles_sync,
)

EXPECTED: dict[str, set[str]] = {
    "dispatcher": {VIEW_CONSOLE, DISPATCH_LOADS},
    "oncall": {VIEW_CONSOLE, RESPOND_INCIDENTS},
    "admin_user": {VIEW_CONSOLE, DISPATCH_LOADS, RESPOND_INCIDENTS, MANAGE_SLA, MANAGE_PLATFORM, MANAGE_CARRIERS},
    "readonly": {VIEW_CONSOLE},
    "sla_manager": {VIEW_CONSOLE, MANAGE_SLA},
    "outsider": set(),
}
PERSONAS = list(EXPECTED)


def console_perms(user: User) -> set[str]:
    fresh = User.objects.get(pk=user.pk)  # no permission cache from earlier checks
    return {p.split(".", 1)[1] for p in fresh.get_all_permissions() if p.startswith("tms_console.")}


def as_verified(user: User) -> User:
    user.is_verified = lambda: True  # type: ignore[attr-defined]
    return user


def as_unverified(user: User) -> User:
    user.is_verified = lambda: False  # type: ignore[attr-defined]
    return user


def test_post_migrate_created_every_role_with_its_permissions(db: Any) -> None:
    # No roles_sync() call here: the groups come from the post_migrate hook.
    groups = {g.name: {p.codename for p in g.permissions.all()} for g in Group.objects.prefetch_related("permissions")}
    for role, codenames in ROLE_PERMISSIONS.items():
        assert groups[role] == set(codenames)
    assert set(ROLE_PERMISSIONS) == {DISPATCHER, ON_CALL, ADMIN, READ_ONLY, SLA_MANAGER, CARRIER_MANAGER}


def test_roles_sync_is_idempotent_and_repairs_drift(db: Any) -> None:
    roles_sync()
    dispatcher = Group.objects.get(name=DISPATCHER)
    dispatcher.permissions.add(Permission.objects.get(codename=MANAGE_PLATFORM))
    Group.objects.get(name=READ_ONLY).permissions.clear()
    roles_sync()
    roles_sync()
    assert {p.codename for p in Group.objects.get(name=DISPATCHER).permissions.all()} == {VIEW_CONSOLE, DISPATCH_LOADS}
    assert {p.codename for p in Group.objects.get(name=READ_ONLY).permissions.all()} == {VIEW_CONSOLE}
    assert Group.objects.filter(name__in=ROLE_PERMISSIONS).count() == len(ROLE_PERMISSIONS)
    assert Permission.objects.filter(content_type__app_label="tms_console").count() == len(PERMISSIONS)


@pytest.mark.parametrize("persona", PERSONAS)
def test_persona_has_exactly_its_permissions(request: pytest.FixtureRequest, persona: str) -> None:
    user: User = request.getfixturevalue(persona)
    if persona == "admin_user":
        # The admin persona is a superuser, which holds every permission anyway;
        # check the role itself grants the full set too.
        user.is_superuser = False
        user.save()
    assert console_perms(user) == EXPECTED[persona]


@pytest.mark.parametrize("persona", [p for p in PERSONAS if p != "outsider"])
def test_dashboard_reachable_by_every_role(request: pytest.FixtureRequest, persona: str) -> None:
    client = verified_client(request.getfixturevalue(persona))
    response = client.get("/")
    assert response.status_code == 200


def test_dashboard_refuses_a_verified_user_without_a_role(outsider: User) -> None:
    client = verified_client(outsider)
    response = client.get("/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "You don't have access to this page" in html
    assert "Ask a console administrator" in html


# --- The guards ---------------------------------------------------------------------


@console_permission_required(DISPATCH_LOADS)
def dispatch_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse("dispatched")


class IncidentOnly(ConsolePermissionMixin, View):
    console_permission = [VIEW_CONSOLE, RESPOND_INCIDENTS]

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("responded")


def call(view: Any, user: Any) -> HttpResponse:
    request = RequestFactory().get("/some/page/?x=1")
    request.user = user
    response: HttpResponse = view(request)
    return response


def test_decorator_lets_the_permission_holder_through(dispatcher: User) -> None:
    response = call(dispatch_only, as_verified(dispatcher))
    assert response.status_code == 200
    assert response.content == b"dispatched"


@pytest.mark.parametrize("persona", ["oncall", "readonly", "sla_manager", "outsider"])
def test_decorator_refuses_others_with_the_friendly_403(request: pytest.FixtureRequest, persona: str) -> None:
    response = call(dispatch_only, as_verified(request.getfixturevalue(persona)))
    assert response.status_code == 403
    html = response.content.decode()
    assert "You don't have access to this page" in html
    assert PERMISSIONS[DISPATCH_LOADS] in html


def test_guards_send_unverified_and_anonymous_users_to_login(dispatcher: User, oncall: User) -> None:
    for view, user in ((dispatch_only, as_unverified(dispatcher)), (IncidentOnly.as_view(), as_unverified(oncall))):
        response = call(view, user)
        assert response.status_code == 302
        assert response["Location"].startswith("/account/login/?next=")
    response = call(dispatch_only, AnonymousUser())
    assert response.status_code == 302


def test_mixin_checks_every_listed_permission(oncall: User, dispatcher: User) -> None:
    assert call(IncidentOnly.as_view(), as_verified(oncall)).status_code == 200
    assert call(IncidentOnly.as_view(), as_verified(dispatcher)).status_code == 403


def test_unknown_permission_name_fails_loudly() -> None:
    with pytest.raises(ValueError, match="unknown console permission"):
        console_permission_required("dispatch_lods")


def test_full_permission_names_are_accepted(dispatcher: User) -> None:
    assert user_has_console_permission(as_verified(dispatcher), perm(DISPATCH_LOADS))
    assert not user_has_console_permission(as_verified(dispatcher), perm(MANAGE_SLA))
