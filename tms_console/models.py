"""Console-wide permissions (no table of their own)."""

from django.db import models

from tms_console.permission_codes import PERMISSIONS


class ConsoleAccess(models.Model):
    """Anchor for the console's global permissions; never stores rows."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = list(PERMISSIONS.items())

    def __str__(self) -> str:
        return "console access"
