"""Routes of the reviews pages, under /reviews/ (namespace "reviews")."""

from django.urls import path

from approvals import review_views

app_name = "reviews"

urlpatterns = [
    path("", review_views.review_list, name="list"),
    path("<str:public_id>/", review_views.review_detail, name="detail"),
    path("<str:public_id>/decide", review_views.review_decide, name="decide"),
]
