from django.contrib import admin
from django.urls import include, path

from gateway_site.dashboard import dashboard

urlpatterns = [
    path("", dashboard, name="dashboard"),
    path("sessions/", include("recordings.urls")),
    path("reviews/", include("approvals.review_urls")),
    # Just-in-time access: /access/ pages and the agents' /api/access-requests endpoint.
    path("", include("approvals.access_urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
]
