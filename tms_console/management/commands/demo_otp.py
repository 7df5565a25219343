"""Print the current one-time code of a user's TOTP device (demo and local testing aid)."""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_otp.plugins.otp_totp.models import TOTPDevice

from tms_console.demo import totp_current_code


class Command(BaseCommand):
    help = "Print the current 6-digit TOTP code for USERNAME (the code alone on stdout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
        if device is None:
            raise CommandError(
                f"{username!r} has no confirmed TOTP device. Run `manage.py seed_demo` for the demo users, "
                "or sign in and enroll at /account/two_factor/setup/."
            )
        self.stdout.write(totp_current_code(device))
        # On stderr, so scripts can capture the code alone from stdout.
        remaining = device.step - int(time.time() - device.t0) % device.step
        self.stderr.write(f"valid for about {remaining} more seconds")
