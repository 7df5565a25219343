from django.contrib import admin

from sla.models import Contract


@admin.register(Contract)
class ContractAdmin(admin.ModelAdmin[Contract]):
    list_display = ("carrier", "version", "effective_from", "effective_to", "monthly_fee_usd")
    list_filter = ("carrier",)
