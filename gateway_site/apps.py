from django.apps import AppConfig


class GatewaySiteConfig(AppConfig):
    name = "gateway_site"
