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


class RateCounter(models.Model):
    """Requests (or failed guesses) counted in one window of one limit, when no Redis is configured.

    ``tms_console.ratelimit`` increments a row with one atomic ``INSERT ... ON
    CONFLICT DO UPDATE ... WHERE hits + cost <= cap`` statement, so concurrent
    requests in every process see each other's counts; rows are dead two
    windows after they start (``expires_at``, Unix seconds) and purged then.
    """

    bucket = models.CharField(max_length=200)
    window_index = models.BigIntegerField()
    hits = models.IntegerField(default=0)
    expires_at = models.BigIntegerField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket", "window_index"], name="ratecounter_bucket_window")]
        default_permissions = ()  # machinery, not something anyone is granted

    def __str__(self) -> str:
        return f"{self.bucket}@{self.window_index}: {self.hits}"
