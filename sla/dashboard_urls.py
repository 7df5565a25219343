"""SLA dashboards (mounted under /sla/dashboard/)."""

from django.urls import URLPattern, URLResolver, path

from sla import dashboard_views as v

app_name = "sla_dashboard"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", v.overview, name="overview"),
    path("comparison.json", v.comparison_json, name="comparison_json"),
    path("carriers/<int:carrier_id>/", v.carrier_dashboard, name="carrier"),
    path("carriers/<int:carrier_id>/series.json", v.carrier_series, name="carrier_series"),
    path("carriers/<int:carrier_id>/summary.json", v.carrier_summary_json, name="carrier_summary"),
    path("breaches/", v.breach_list, name="breach_list"),
    path("breaches/<int:pk>/", v.breach_detail, name="breach_detail"),
    path("breaches/<int:pk>/decide", v.breach_decide_view, name="breach_decide"),
    path("credits/", v.credit_ledger, name="ledger"),
    path("credits/ledger.csv", v.ledger_download, {"fmt": "csv"}, name="ledger_csv"),
    path("credits/ledger.json", v.ledger_download, {"fmt": "json"}, name="ledger_json"),
]
