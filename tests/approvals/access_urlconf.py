"""The site's routes plus approvals.access_urls, until gateway_site.urls includes them."""

from django.urls import include, path

from gateway_site.urls import urlpatterns as site_urlpatterns

urlpatterns = [*site_urlpatterns, path("", include("approvals.access_urls"))]
