from django.contrib import admin

from missions.admin import ReadOnlyAdmin
from runbooks.models import Incident


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ("id", "title", "kind", "severity", "status", "triggered_at")
    list_filter = ("status", "kind", "severity")
