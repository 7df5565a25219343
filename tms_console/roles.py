"""Roles are Django groups holding a handful of console permissions.

Views check permissions, never group names, so a site can compose its own
roles from the same permissions. ``roles_sync`` (run after every migrate)
keeps the built-in groups in line with ``ROLE_PERMISSIONS``.
"""

from __future__ import annotations

from typing import Any

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


def roles_sync(**_: Any) -> None:
    """Create the role groups and give each exactly its permissions."""
    perms = {
        p.codename: p
        for p in Permission.objects.filter(content_type__app_label=APP_LABEL, codename__in=PERMISSIONS)
    }
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([perms[c] for c in codenames if c in perms])


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    return set(user.groups.values_list("name", flat=True))  # type: ignore[union-attr]
