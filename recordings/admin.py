"""Admin for sessions: read-only, except the legal hold flag.

Recordings are immutable and purge is the only way to delete one, so the
admin offers no add, no delete and no edit of anything but `legal_hold`.
"""

import uuid

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from recordings.models import Session


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    """Sessions, searchable by id, actor, connection and client; only `legal_hold` can change."""

    list_display = (
        "public_id",
        "actor",
        "connection",
        "status",
        "started_at",
        "ended_at",
        "statements",
        "errors",
        "retain_until",
        "legal_hold",
    )
    list_filter = ("status", "legal_hold", "connection")
    search_fields = ("actor", "client_addr", "application_name", "connection__name")
    date_hierarchy = "started_at"
    list_select_related = ("connection",)
    fields = (
        "public_id",
        "actor",
        "account",
        "connection",
        "client_addr",
        "application_name",
        "status",
        "started_at",
        "ended_at",
        "statements",
        "errors",
        "bytes_from_client",
        "bytes_to_client",
        "recording_path",
        "line_count",
        "chain_head",
        "seal",
        "retain_until",
        "legal_hold",
    )
    readonly_fields = tuple(name for name in fields if name != "legal_hold")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Session | None = None) -> bool:
        return False

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # A UUID is stored without dashes on some databases, so text search
        # would miss a pasted session id: match it exactly instead.
        try:
            public_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(public_id=public_id), False
