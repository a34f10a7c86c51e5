"""Websocket routes: the reviewers' live feed and live watch of a session."""

from django.urls import path

from gateway_site.feed_consumer import FeedConsumer
from recordings.consumers import SessionWatchConsumer

websocket_urlpatterns = [
    path("ws/feed/", FeedConsumer.as_asgi()),
    path("ws/sessions/<uuid:public_id>/watch/", SessionWatchConsumer.as_asgi()),
]
