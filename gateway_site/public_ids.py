"""Public ids (UUIDs) as they arrive from URLs, commands and admin searches.

Pages, commands and websockets name rows by public UUID, never by integer
primary key. A malformed id must look exactly like a missing row, so the
funnels parse with `parse_public_id` and treat None as "not found".
"""

import uuid

from django.db.models import QuerySet
from django.http import HttpRequest


def parse_public_id(value: object) -> uuid.UUID | None:
    """The UUID `value` names, or None when it names none."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        return None


class PublicIdSearchMixin:
    """A ModelAdmin mixin: a search term that is a UUID matches `public_id` exactly."""

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # A UUID is stored without dashes on some databases, so text search
        # would miss a pasted id: match it exactly instead.
        public_id = parse_public_id(search_term)
        if public_id is None:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(public_id=public_id), False
