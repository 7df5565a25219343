"""Forms of the incident pages."""

from __future__ import annotations

from django import forms


class IncidentActionForm(forms.Form):
    note = forms.CharField(max_length=2000, required=False, strip=True)
