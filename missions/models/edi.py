"""EDI X12 trading partners, their control-number counters and every interchange exchanged.

Writes go through ``missions.edi.services``; docs/edi.md describes the exchange.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from missions.models.core import Carrier, Mission, Tender

EDI_TRANSACTIONS = ("204", "990", "214", "997")


class EdiVersion(models.TextChoices):
    V4010 = "004010", "004010"
    V5010 = "005010", "005010"


class EdiTransport(models.TextChoices):
    FOLDER = "folder", "Local folder (drop and pick-up folders under EDI_DIR)"
    HTTPS = "https", "HTTPS POST"


class EdiDirection(models.TextChoices):
    INBOUND = "inbound", "Received"
    OUTBOUND = "outbound", "Sent"


class EdiStatus(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    PARTIAL = "partial", "Partly accepted"
    REJECTED = "rejected", "Rejected"
    DUPLICATE = "duplicate", "Duplicate (first answer replayed)"
    SENT = "sent", "Sent"
    FAILED = "failed", "Sending failed"


class EdiAckStatus(models.TextChoices):
    PENDING = "pending", "Awaiting 997"
    ACCEPTED = "accepted", "997: accepted"
    PARTIAL = "partial", "997: partly accepted"
    REJECTED = "rejected", "997: rejected"
    NOT_EXPECTED = "none", "No 997 (a 997 is never acknowledged)"


class EdiPartner(models.Model):
    """A carrier's EDI identity and settings: who it is on the envelope, what it exchanges, how files travel.

    The console's own identity (ISA05/06 when sending) is ``EDI_SENDER_QUALIFIER`` / ``EDI_SENDER_ID``.
    """

    carrier = models.OneToOneField(Carrier, on_delete=models.CASCADE, related_name="edi")
    interchange_qualifier = models.CharField(max_length=2, default="ZZ", help_text="ISA05/07 of the carrier")
    interchange_id = models.CharField(max_length=15, help_text="ISA06/08 of the carrier")
    application_code = models.CharField(max_length=15, blank=True, help_text="GS02/03; the interchange id if empty")
    scac = models.CharField(max_length=4, help_text="Standard Carrier Alpha Code (B202, B101)")
    version = models.CharField(max_length=6, choices=EdiVersion.choices, default=EdiVersion.V4010)
    element_separator = models.CharField(max_length=1, default="*")
    component_separator = models.CharField(max_length=1, default=">")
    segment_terminator = models.CharField(max_length=1, default="~")
    repetition_separator = models.CharField(max_length=1, default="^")
    # The transaction sets exchanged with this carrier: 204 out, 990 and 214 in, 997 both ways.
    transactions = models.JSONField(default=list)
    transport = models.CharField(max_length=10, choices=EdiTransport.choices, default=EdiTransport.FOLDER)
    # HTTPS: where 204s and our 997s are POSTed (the carrier posts to /api/v1/edi/interchanges).
    https_url = models.URLField(blank=True)
    test_mode = models.BooleanField(default=False, help_text="ISA15 T instead of P")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["carrier__name"]
        constraints = [
            models.UniqueConstraint(fields=["interchange_qualifier", "interchange_id"], name="edi_partner_identity")
        ]

    def __str__(self) -> str:
        return f"{self.carrier.slug} ({self.interchange_qualifier}/{self.interchange_id})"

    def exchanges(self, transaction: str) -> bool:
        return self.is_active and transaction in (self.transactions or [])

    @property
    def group_code(self) -> str:
        return self.application_code or self.interchange_id

    def clean(self) -> None:
        errors: dict[str, str] = {}
        separators = [self.element_separator, self.component_separator, self.segment_terminator]
        if self.version == EdiVersion.V5010:
            separators.append(self.repetition_separator)
        if len(set(separators)) != len(separators) or any(c.isalnum() or c.isspace() for c in separators):
            errors["element_separator"] = "The delimiters must differ and cannot be letters, digits or spaces."
        unknown = set(self.transactions or []) - set(EDI_TRANSACTIONS)
        if unknown or not isinstance(self.transactions, list):
            errors["transactions"] = f"Transactions are a list of {', '.join(EDI_TRANSACTIONS)}."
        if self.transport == EdiTransport.HTTPS and not self.https_url:
            errors["https_url"] = "HTTPS transport needs the carrier's URL."
        if errors:
            raise ValidationError(errors)


class EdiControlCounter(models.Model):
    """The last control number used towards one partner, per envelope level (isa, gs, st).

    Allocated under a row lock (``missions.edi.services.control_numbers_allocate``): two workers
    sending at once never share a number.
    """

    partner = models.ForeignKey(EdiPartner, on_delete=models.CASCADE, related_name="counters")
    level = models.CharField(max_length=3)
    value = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partner", "level"], name="edi_counter_per_level")]

    def __str__(self) -> str:
        return f"{self.partner_id}/{self.level}={self.value}"


class EdiInterchange(models.Model):
    """One interchange sent or received, its raw text, what it did and the 997 that answers it.

    An inbound interchange is unique per sender and ISA13 (``duplicate_of`` is set on a resend,
    which changes nothing). ``errors`` holds located problems: "segment GE (position 9), element 1: ...".
    """

    partner = models.ForeignKey(
        EdiPartner, null=True, blank=True, on_delete=models.PROTECT, related_name="interchanges"
    )
    carrier = models.ForeignKey(Carrier, null=True, blank=True, on_delete=models.PROTECT, related_name="interchanges")
    direction = models.CharField(max_length=10, choices=EdiDirection.choices)
    transaction_types = models.CharField(max_length=40, blank=True, help_text="e.g. '990' or '990,214'")
    sender_qualifier = models.CharField(max_length=2, blank=True)
    sender_id = models.CharField(max_length=15, blank=True)
    receiver_qualifier = models.CharField(max_length=2, blank=True)
    receiver_id = models.CharField(max_length=15, blank=True)
    control_number = models.CharField(max_length=9, blank=True, help_text="ISA13")
    group_control_numbers = models.JSONField(default=list, blank=True)
    set_control_numbers = models.JSONField(default=list, blank=True)
    version = models.CharField(max_length=6, blank=True)
    raw = models.TextField()
    content_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=EdiStatus.choices)
    ack_status = models.CharField(max_length=10, choices=EdiAckStatus.choices, default=EdiAckStatus.PENDING)
    errors = models.JSONField(default=list, blank=True)
    # What the interchange was about (the first tender / mission it names).
    tender = models.ForeignKey(Tender, null=True, blank=True, on_delete=models.SET_NULL, related_name="interchanges")
    mission = models.ForeignKey(Mission, null=True, blank=True, on_delete=models.SET_NULL, related_name="interchanges")
    correlation_id = models.UUIDField(null=True, blank=True, db_index=True)
    # A 997 points at the interchange it acknowledges; that interchange points back at its 997.
    acknowledges = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="acknowledgements"
    )
    ack = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    duplicate_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="resends")
    transport = models.CharField(max_length=10, blank=True)
    source = models.CharField(max_length=200, blank=True, help_text="file name or endpoint it came from / went to")
    send_count = models.PositiveIntegerField(default=0)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["carrier", "direction", "created_at"])]
        constraints = [
            # The idempotency of inbound interchanges: one first receipt per sender and ISA13.
            models.UniqueConstraint(
                fields=["direction", "sender_qualifier", "sender_id", "control_number"],
                condition=Q(duplicate_of__isnull=True) & ~Q(control_number="") & Q(direction="inbound"),
                name="edi_inbound_once_per_control_number",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.transaction_types or '?'} #{self.control_number or '-'}"

    @property
    def error_count(self) -> int:
        return len(self.errors or [])
