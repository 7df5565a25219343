"""The console's permissions: codenames and what each allows (shared by the model and the roles)."""

VIEW_CONSOLE = "view_console"
DISPATCH_LOADS = "dispatch_loads"
RESPOND_INCIDENTS = "respond_incidents"
MANAGE_SLA = "manage_sla"
MANAGE_PLATFORM = "manage_platform"
MANAGE_CARRIERS = "manage_carriers"

PERMISSIONS: dict[str, str] = {
    VIEW_CONSOLE: "Can view the operations console",
    DISPATCH_LOADS: "Can create shipments, tender loads and cancel tenders or missions",
    RESPOND_INCIDENTS: "Can acknowledge, run runbook steps on and resolve incidents",
    MANAGE_SLA: "Can confirm or dispute SLA breaches and export credits",
    MANAGE_PLATFORM: "Can manage carriers, contracts, partner credentials and runbooks",
    MANAGE_CARRIERS: "Can invite carriers, review their onboarding and approve them for go-live",
}
