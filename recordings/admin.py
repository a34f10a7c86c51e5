"""Admin for sessions: read-only, except the legal hold flag.

Recordings are immutable and purge is the only way to delete one, so the
admin offers no add, no delete and no edit of anything but `legal_hold`.
"""

from django.contrib import admin
from django.http import HttpRequest

from gateway_site.public_ids import PublicIdSearchMixin
from recordings.models import Session


@admin.register(Session)
class SessionAdmin(PublicIdSearchMixin, admin.ModelAdmin):
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
