"""Console pages for carriers, shipments, tenders and missions."""

from django.urls import URLPattern, URLResolver, path

from missions.tendering import flag_views, views

app_name = "missions"

urlpatterns: list[URLPattern | URLResolver] = [
    path("carriers/", views.carrier_list, name="carrier_list"),
    path("carriers/flags/", flag_views.carrier_flags, name="carrier_flags"),
    path("carriers/<int:pk>/", views.carrier_detail, name="carrier_detail"),
    path("carriers/<int:pk>/flags/", flag_views.carrier_flag_set, name="carrier_flag_set"),
    path("shipments/", views.shipment_list, name="shipment_list"),
    path("shipments/new/", views.shipment_create, name="shipment_create"),
    path("shipments/eligibility/", views.shipment_eligibility, name="shipment_eligibility"),
    path("shipments/<int:pk>/", views.shipment_detail, name="shipment_detail"),
    path("shipments/<int:pk>/tender/", views.shipment_tender, name="shipment_tender"),
    path("shipments/<int:pk>/waterfall/", views.shipment_waterfall, name="shipment_waterfall"),
    path("shipments/<int:pk>/cancel/", views.shipment_cancel, name="shipment_cancel"),
    path("tenders/<int:pk>/cancel/", views.tender_cancel, name="tender_cancel"),
    path("tenders/<int:pk>/counter/", views.tender_counter_decide, name="tender_counter_decide"),
    path("missions/", views.mission_list, name="mission_list"),
    path("missions/<int:pk>/", views.mission_detail, name="mission_detail"),
    path("missions/<int:pk>/cancel/", views.mission_cancel, name="mission_cancel"),
]
