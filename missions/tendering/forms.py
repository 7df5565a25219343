"""Console forms: parse and check input, then hand clean values to a service.

Forms never save domain objects; the views call ``missions.services``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from missions.flags import CARRIER_FLAGS
from missions.models import Carrier, Shipment
from missions.services import SHIPMENT_FIELDS

# Two-letter codes of the US states and DC: the regions carriers declare.
# fmt: off
US_REGION_CODES = frozenset({
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC",
    "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY",
})
# fmt: on

_DATETIME_INPUT_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]


class _DateTimeLocal(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M")


def _region_clean(value: str) -> str:
    code = (value or "").strip().upper()
    if code not in US_REGION_CODES:
        raise ValidationError("Use a two-letter US state code, e.g. TX.")
    return code


class ShipmentCreateForm(forms.ModelForm):  # type: ignore[type-arg]
    """The shipment a dispatcher types in; times are UTC."""

    weight_kg = forms.IntegerField(
        label="Weight (kg)",
        min_value=1,
        max_value=60000,
        error_messages={"min_value": "The weight must be more than 0 kg."},
    )

    class Meta:
        model = Shipment
        fields = list(SHIPMENT_FIELDS)
        widgets = {
            "pickup_window_start": _DateTimeLocal(),
            "pickup_window_end": _DateTimeLocal(),
            "delivery_window_start": _DateTimeLocal(),
            "delivery_window_end": _DateTimeLocal(),
        }
        labels = {
            "origin_region": "Origin state",
            "destination_region": "Destination state",
            "origin_lat": "Origin latitude",
            "origin_lon": "Origin longitude",
            "destination_lat": "Destination latitude",
            "destination_lon": "Destination longitude",
            "weight_kg": "Weight (kg)",
            "max_autonomy_level": "Max autonomy level (SAE 0-5)",
            "target_rate_usd": "Target rate (USD)",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("pickup_window_start", "pickup_window_end", "delivery_window_start", "delivery_window_end"):
            self.fields[name].input_formats = _DATETIME_INPUT_FORMATS  # type: ignore[attr-defined]
        for name in ("origin_lat", "destination_lat"):
            self.fields[name].widget.attrs.update(min="-90", max="90", step="any")
        for name in ("origin_lon", "destination_lon"):
            self.fields[name].widget.attrs.update(min="-180", max="180", step="any")
        self.fields["weight_kg"].widget.attrs.update(min="1")
        for name in ("origin_region", "destination_region"):
            self.fields[name].widget.attrs.update(maxlength="2", placeholder="TX", autocapitalize="characters")

    def _post_clean(self) -> None:
        # The model's clean() would repeat a field's error in other words when
        # that field already failed here; run it only on otherwise valid input.
        # (Private ModelForm hook, hence the ignore: the stubs do not declare it.)
        if self.errors:
            return
        super()._post_clean()  # type: ignore[misc]

    def clean_origin_region(self) -> str:
        return _region_clean(self.cleaned_data.get("origin_region", ""))

    def clean_destination_region(self) -> str:
        return _region_clean(self.cleaned_data.get("destination_region", ""))

    def clean_weight_kg(self) -> int:
        weight = self.cleaned_data.get("weight_kg")
        if weight is None or weight <= 0:
            raise ValidationError("The weight must be more than 0 kg.")
        return int(weight)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        ps, pe = data.get("pickup_window_start"), data.get("pickup_window_end")
        ds, de = data.get("delivery_window_start"), data.get("delivery_window_end")
        if ps and pe and pe <= ps:
            self.add_error("pickup_window_end", "The pickup window must end after it starts.")
        if ds and de and de <= ds:
            self.add_error("delivery_window_end", "The delivery window must end after it starts.")
        if ps and ds and ds < ps:
            self.add_error("delivery_window_start", "Delivery cannot start before pickup starts.")
        return data

    def service_fields(self) -> dict[str, Any]:
        """The cleaned values in the shape ``services.shipment_create`` takes."""
        return {name: self.cleaned_data.get(name) for name in SHIPMENT_FIELDS}

    def add_model_errors(self, error: ValidationError) -> None:
        """Attach a model ValidationError raised by the service to the matching fields."""
        if hasattr(error, "error_dict"):
            for field, errors in error.error_dict.items():
                target = field if field in self.fields else None
                for err in errors:
                    self.add_error(target, err.messages)
        else:
            self.add_error(None, error.messages)


class TenderCreateForm(forms.Form):
    """Tender a shipment to one carrier (the carrier must be eligible; the service re-checks)."""

    carrier = forms.ModelChoiceField(queryset=Carrier.objects.none(), empty_label="Choose a carrier")
    offered_price_usd = forms.DecimalField(
        label="Offered price (USD)", required=False, min_value=0, max_digits=10, decimal_places=2
    )
    expiry_seconds = forms.IntegerField(
        label="Expires after (s)",
        required=False,
        min_value=10,
        max_value=7 * 24 * 3600,
        help_text="Empty: the carrier's default.",
    )

    def __init__(self, *args: Any, carriers: list[Carrier] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ids = [c.pk for c in carriers] if carriers is not None else None
        qs = Carrier.objects.all() if ids is None else Carrier.objects.filter(pk__in=ids)
        self.fields["carrier"].queryset = qs  # type: ignore[attr-defined]


class WaterfallForm(forms.Form):
    """Start the automatic waterfall over the ranked carriers, optionally at a price."""

    offered_price_usd = forms.DecimalField(
        label="Offered price (USD)", required=False, min_value=0, max_digits=10, decimal_places=2
    )


class ReasonForm(forms.Form):
    """Cancel something: the reason is mandatory and lands on the timeline."""

    reason = forms.CharField(max_length=300, strip=True, widget=forms.TextInput(attrs={"placeholder": "Reason"}))


class CounterDecisionForm(forms.Form):
    """Accept or decline a carrier's counter-offer."""

    decision = forms.ChoiceField(choices=[("accept", "Accept"), ("decline", "Decline")])
    reason = forms.CharField(max_length=300, required=False, strip=True)


class EligibilityForm(forms.Form):
    """What is typed so far on the new-shipment form; every field optional (a partial load)."""

    origin_region = forms.CharField(required=False, max_length=8, label="origin state")
    destination_region = forms.CharField(required=False, max_length=8, label="destination state")
    weight_kg = forms.IntegerField(required=False, min_value=1, max_value=60000, label="weight")
    hazmat = forms.BooleanField(required=False, label="hazmat")
    needs_night_operations = forms.BooleanField(required=False, label="needs night driving")
    max_autonomy_level = forms.IntegerField(required=False, min_value=0, max_value=5, label="max autonomy level")

    def invalid_labels(self) -> list[str]:
        """The fields typed so far that are not valid yet (the form itself says why, field by field)."""
        return [str(self.fields[name].label) for name in self.errors if name in self.fields]

    def clean_origin_region(self) -> str:
        value = self.cleaned_data.get("origin_region", "")
        return _region_clean(value) if value.strip() else ""

    def clean_destination_region(self) -> str:
        value = self.cleaned_data.get("destination_region", "")
        return _region_clean(value) if value.strip() else ""

    def draft(self) -> Shipment:
        """An unsaved shipment holding the valid parts of the input, for ``carrier_fit``."""
        data = {k: v for k, v in self.cleaned_data.items() if k not in self.errors}
        return Shipment(
            origin_region=data.get("origin_region") or "",
            destination_region=data.get("destination_region") or "",
            weight_kg=data.get("weight_kg") or 0,
            hazmat=bool(data.get("hazmat")),
            needs_night_operations=bool(data.get("needs_night_operations")),
            max_autonomy_level=data.get("max_autonomy_level"),
        )

    def asked(self) -> bool:
        """Enough to judge a lane: both states, valid."""
        return bool(self.cleaned_data.get("origin_region") and self.cleaned_data.get("destination_region"))


class CarrierFlagForm(forms.Form):
    """Switch one feature flag of a carrier: a reason always, a confirmation to switch a risky one on."""

    flag = forms.ChoiceField(
        choices=[(key, spec.label) for key, spec in CARRIER_FLAGS.items()], widget=forms.HiddenInput
    )
    enabled = forms.TypedChoiceField(
        choices=[("on", "Switch on"), ("off", "Switch off")], coerce=lambda v: v == "on", widget=forms.HiddenInput
    )
    reason = forms.CharField(
        max_length=300, strip=True, widget=forms.TextInput(attrs={"placeholder": "Reason (on the audit trail)"})
    )
    confirm = forms.BooleanField(required=False, label="I confirm this capability may be switched on")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        spec = CARRIER_FLAGS.get(data.get("flag") or "")
        if spec is not None and data.get("enabled") is True and spec.risky and not data.get("confirm"):
            self.add_error("confirm", f"Tick the confirmation to switch {spec.label.lower()} on.")
        return data
