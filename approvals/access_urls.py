"""Routes of just-in-time access: the agents' REST endpoint and the web pages (include under the site root)."""

from django.urls import path

from approvals import access_api, access_views

app_name = "access"

urlpatterns = [
    path("api/access-requests", access_api.access_requests_api, name="api-requests"),
    path("api/access-requests/<str:public_id>", access_api.access_request_api, name="api-request"),
    path("access/", access_views.access_list, name="list"),
    path("access/<str:public_id>/", access_views.access_detail, name="detail"),
]
