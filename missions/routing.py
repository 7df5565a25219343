"""Websocket routes: live timelines and the live map."""

from django.urls import URLPattern, URLResolver, re_path

from missions.consumers import TimelineConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^ws/timeline/(?P<kind>shipment|mission|incident)/(?P<pk>[0-9]+)/$", TimelineConsumer.as_asgi()),
    re_path(r"^ws/timeline/(?P<kind>incidents)/(?:(?P<pk>[0-9]+)/)?$", TimelineConsumer.as_asgi()),
]
