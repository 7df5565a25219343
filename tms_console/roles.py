"""Roles are Django groups holding a handful of console permissions.

Views check permissions, never group names, so a site can compose its own
roles from the same permissions. ``roles_sync`` (run after every migrate)
keeps the built-in groups in line with ``ROLE_PERMISSIONS``.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission

APP_LABEL = "tms_console"

VIEW_CONSOLE = "view_console"
DISPATCH_LOADS = "dispatch_loads"
RESPOND_INCIDENTS = "respond_incidents"
MANAGE_SLA = "manage_sla"
MANAGE_PLATFORM = "manage_platform"

PERMISSIONS: dict[str, str] = {
    VIEW_CONSOLE: "Can view the operations console",
    DISPATCH_LOADS: "Can create shipments, tender loads and cancel tenders or missions",
    RESPOND_INCIDENTS: "Can acknowledge, run runbook steps on and resolve incidents",
    MANAGE_SLA: "Can confirm or dispute SLA breaches and export credits",
    MANAGE_PLATFORM: "Can manage carriers, contracts, partner credentials and runbooks",
}

DISPATCHER = "dispatcher"
ON_CALL = "on-call"
ADMIN = "admin"
READ_ONLY = "read-only"
SLA_MANAGER = "sla-manager"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    READ_ONLY: [VIEW_CONSOLE],
    DISPATCHER: [VIEW_CONSOLE, DISPATCH_LOADS],
    ON_CALL: [VIEW_CONSOLE, RESPOND_INCIDENTS],
    SLA_MANAGER: [VIEW_CONSOLE, MANAGE_SLA],
    ADMIN: [VIEW_CONSOLE, DISPATCH_LOADS, RESPOND_INCIDENTS, MANAGE_SLA, MANAGE_PLATFORM],
}


def perm(codename: str) -> str:
    """The ``app_label.codename`` string Django's permission checks expect."""
    return f"{APP_LABEL}.{codename}"


ROLE_DESCRIPTIONS: dict[str, str] = {
    READ_ONLY: "Sees every console page; changes nothing.",
    DISPATCHER: "Creates shipments, tenders loads, follows missions.",
    ON_CALL: "Answers incidents, runs runbooks, fails over to a fallback carrier.",
    SLA_MANAGER: "Reviews SLOs, confirms or disputes breaches, exports credits.",
    ADMIN: "Everything above, plus carriers, contracts, partner credentials and runbooks.",
}


def console_permissions() -> dict[str, Permission]:
    """The console's Permission rows by codename, created if missing.

    ``post_migrate`` normally creates them (they hang off the unmanaged
    ``ConsoleAccess`` model); creating them here as well lets ``roles_sync``
    run first, e.g. from a test fixture.
    """
    from django.contrib.contenttypes.models import ContentType

    from tms_console.models import ConsoleAccess

    content_type = ContentType.objects.get_for_model(ConsoleAccess, for_concrete_model=False)
    found: dict[str, Permission] = {}
    for codename, name in PERMISSIONS.items():
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
        found[codename] = permission
    return found


def roles_sync(**_: Any) -> None:
    """Create the role groups and give each exactly its permissions (idempotent)."""
    perms = console_permissions()
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.get_or_create(name=role)
        group.permissions.set([perms[c] for c in codenames])


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    """Names of the groups the user belongs to (empty for anonymous users)."""
    if not user.is_authenticated:
        return set()
    groups = cast(Any, user).groups
    return set(groups.values_list("name", flat=True))
