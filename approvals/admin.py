"""Admin for reviews: read-only, for audit.

Reviews are decided on the reviewer pages or with `manage.py reviews`,
which go through the access funnel and four eyes; the admin only shows
what happened, with each reviewer's vote inline.
"""

import uuid

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from approvals.models import Review, ReviewDecision


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
class ReviewAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # A UUID is stored without dashes on some databases: match a pasted review id exactly.
        try:
            public_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(public_id=public_id), False
