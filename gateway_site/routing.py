"""Websocket routes; the reviewer feeds and live watch add theirs here."""

websocket_urlpatterns: list = []
