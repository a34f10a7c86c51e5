"""Admin for reviews and access requests: read-only, for audit.

Both are decided on the reviewer pages or with `manage.py reviews` and
`manage.py access`, which go through the access funnels and four eyes; the
admin only shows what happened, with each reviewer's vote inline.
"""

from django.contrib import admin
from django.http import HttpRequest

from approvals.models import AccessRequest, Review, ReviewDecision
from gateway_site.public_ids import PublicIdSearchMixin


class ReadOnlyAdminMixin:
    """No add, no change, no delete: the row is a record of what happened."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ReviewDecisionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ReviewDecision
    fields = ("user", "approve", "comment", "created_at")
    readonly_fields = fields
    extra = 0


@admin.register(Review)
class ReviewAdmin(PublicIdSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Reviews, searchable by id, connection, agent, rule and statement."""

    list_display = ("public_id", "status", "connection", "account", "rule", "created_at", "decided_by")
    list_filter = ("status", "connection")
    search_fields = ("connection__name", "account__name", "rule", "statement", "decided_by")
    date_hierarchy = "created_at"
    list_select_related = ("connection", "account")
    fields = (
        "public_id",
        "status",
        "connection",
        "account",
        "session",
        "rule",
        "statement",
        "approvals_required",
        "created_at",
        "expires_at",
        "decided_at",
        "decided_by",
        "comment",
    )
    readonly_fields = fields
    inlines = (ReviewDecisionInline,)


@admin.register(AccessRequest)
class AccessRequestAdmin(PublicIdSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Access requests and the grants they became, searchable by id, connection, requester and reason."""

    list_display = ("public_id", "status", "connection", "requester", "account", "created_at", "granted_until")
    list_filter = ("status", "connection")
    search_fields = ("connection__name", "requester__username", "account__name", "reason", "decided_by")
    date_hierarchy = "created_at"
    list_select_related = ("connection", "requester", "account")
    fields = (
        "public_id",
        "status",
        "connection",
        "requester",
        "account",
        "reason",
        "duration_seconds",
        "created_at",
        "decided_at",
        "decided_by",
        "comment",
        "granted_from",
        "granted_until",
        "ended_by",
    )
    readonly_fields = fields
