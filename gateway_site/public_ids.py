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


def get_by_public_id(rows: QuerySet, public_id: object, what: str):
    """The row of `rows` with this public id; `rows.model.DoesNotExist("no WHAT ID")` when there is none.

    One message whether the id is malformed, missing or filtered out of
    `rows` by a funnel, so nobody can probe which ids exist.
    """
    parsed = parse_public_id(public_id)
    found = None if parsed is None else rows.filter(public_id=parsed).first()
    if found is None:
        raise rows.model.DoesNotExist(f"no {what} {public_id}")
    return found


class PublicIdSearchMixin:
    """A ModelAdmin mixin: a search term that is a UUID matches `public_id` exactly."""

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # A UUID is stored without dashes on some databases, so text search
        # would miss a pasted id: match it exactly instead.
        public_id = parse_public_id(search_term)
        if public_id is None:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(public_id=public_id), False
