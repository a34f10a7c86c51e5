"""Routes of the sessions pages, under /sessions/ (namespace "sessions")."""

from django.urls import path

from recordings import views

app_name = "sessions"

urlpatterns = [
    path("", views.session_list, name="list"),
    path("<str:public_id>/", views.session_detail, name="detail"),
    path("<str:public_id>/statements.jsonl", views.statements_jsonl, name="statements_jsonl"),
    path("<str:public_id>/statements.csv", views.statements_csv, name="statements_csv"),
    path("<str:public_id>/cast", views.session_cast, name="cast"),
    path("<str:public_id>/terminate", views.session_terminate, name="terminate"),
]
