"""Admin search that finds a row by its public UUID, for models that show one (sessions, reviews)."""

import uuid

from django.db.models import QuerySet
from django.http import HttpRequest


class PublicIdSearchMixin:
    """A ModelAdmin mixin: a search term that is a UUID matches `public_id` exactly."""

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # A UUID is stored without dashes on some databases, so text search
        # would miss a pasted id: match it exactly instead.
        try:
            public_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(public_id=public_id), False
