"""The dashboard: live sessions, pending reviews and access requests, recent sessions, kept fresh by the feed.

The page and the feed render the same fragment templates from the same
funnels (recordings.access, approvals.review_access), so what the feed
pushes is exactly what a reload would show that user.
"""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone

from approvals.access_views import pending_requests_fragment
from approvals.review_access import pending_reviews_for
from recordings.access import sessions_for
from recordings.models import Session

LIVE_SESSIONS_SHOWN = 50
PENDING_REVIEWS_SHOWN = 50
RECENT_SESSIONS_SHOWN = 15
# The blocks the feed replaces, in page order: (element id, fragment template).
LIVE_BLOCKS = (
    ("live-sessions", "gateway_site/_live_sessions.html"),
    ("pending-reviews", "gateway_site/_pending_reviews.html"),
    ("recent-sessions", "gateway_site/_recent_sessions.html"),
)


def live_context(user) -> dict:
    """What the live blocks show `user`: only sessions it may view and reviews it may decide."""
    now = timezone.now()
    visible = sessions_for(user).prefetch_related("connection", "account").order_by("-started_at", "-id")
    return {
        "live_sessions": list(visible.filter(status=Session.Status.LIVE)[:LIVE_SESSIONS_SHOWN]),
        "pending_reviews": list(pending_reviews_for(user, now).order_by("created_at", "id")[:PENDING_REVIEWS_SHOWN]),
        "recent_sessions": list(visible.exclude(status=Session.Status.LIVE)[:RECENT_SESSIONS_SHOWN]),
        "now": now,
    }


def live_fragments(user) -> str:
    """The dashboard's three live blocks rendered again for `user`, each marked `hx-swap-oob="true"`.

    The feed consumer sends this on every feed event; htmx's ws extension
    swaps each block in by its id (live-sessions, pending-reviews,
    recent-sessions). Rendered without a request, so forms in it carry no
    CSRF field: their htmx posts send the token from the page's hx-headers.
    """
    context = live_context(user) | {"oob": True, "user": user}
    blocks = [render_to_string(template, context) for _id, template in LIVE_BLOCKS]
    return "".join(blocks) + pending_requests_fragment(user, oob=True)


def dashboard(request: HttpRequest) -> HttpResponse:
    context = live_context(request.user) | {"pending_requests": pending_requests_fragment(request.user)}
    return render(request, "gateway_site/dashboard.html", context)
