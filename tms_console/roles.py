"""Roles are Django groups holding a handful of console permissions.

Views check permissions, never group names, so a site can compose its own
roles from the same permissions. ``roles_sync`` (run after every migrate)
keeps the built-in groups in line with ``ROLE_PERMISSIONS``.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission
from django.contrib.contenttypes.models import ContentType

# Re-exported: views and consumers name permissions through this module.
from tms_console.models import ConsoleAccess
from tms_console.permission_codes import DISPATCH_LOADS as DISPATCH_LOADS
from tms_console.permission_codes import MANAGE_CARRIERS as MANAGE_CARRIERS
from tms_console.permission_codes import MANAGE_PLATFORM as MANAGE_PLATFORM
from tms_console.permission_codes import MANAGE_SLA as MANAGE_SLA
from tms_console.permission_codes import PERMISSIONS as PERMISSIONS
from tms_console.permission_codes import RESPOND_INCIDENTS as RESPOND_INCIDENTS
from tms_console.permission_codes import VIEW_CONSOLE as VIEW_CONSOLE

APP_LABEL = "tms_console"

DISPATCHER = "dispatcher"
ON_CALL = "on-call"
ADMIN = "admin"
READ_ONLY = "read-only"
SLA_MANAGER = "sla-manager"
CARRIER_MANAGER = "carrier-manager"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    READ_ONLY: [VIEW_CONSOLE],
    DISPATCHER: [VIEW_CONSOLE, DISPATCH_LOADS],
    ON_CALL: [VIEW_CONSOLE, RESPOND_INCIDENTS],
    SLA_MANAGER: [VIEW_CONSOLE, MANAGE_SLA],
    CARRIER_MANAGER: [VIEW_CONSOLE, MANAGE_CARRIERS],
    ADMIN: [VIEW_CONSOLE, DISPATCH_LOADS, RESPOND_INCIDENTS, MANAGE_SLA, MANAGE_PLATFORM, MANAGE_CARRIERS],
}


def perm(codename: str) -> str:
    """The ``app_label.codename`` string Django's permission checks expect."""
    return f"{APP_LABEL}.{codename}"


ROLE_DESCRIPTIONS: dict[str, str] = {
    READ_ONLY: "Sees every console page; changes nothing.",
    DISPATCHER: "Creates shipments, tenders loads, follows missions.",
    ON_CALL: "Answers incidents, runs runbooks, fails over to a fallback carrier.",
    SLA_MANAGER: "Reviews SLOs, confirms or disputes breaches, exports credits.",
    CARRIER_MANAGER: "Invites carriers to the carrier portal and follows their onboarding.",
    ADMIN: "Everything above, plus carriers, contracts, partner credentials and runbooks.",
}


def console_permissions() -> dict[str, Permission]:
    """The console's Permission rows by codename, created if missing.

    ``post_migrate`` normally creates them (they hang off the unmanaged
    ``ConsoleAccess`` model); creating them here as well lets ``roles_sync``
    run first, e.g. from a test fixture.
    """

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
