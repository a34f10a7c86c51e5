"""Reviews pages: the pending list and history, one review, and the approve/deny decision.

Reading goes through approvals.review_access, deciding through
approvals.actions.do_decide_review (the same path as `manage.py reviews`):
a review one may not review is the same 404 as a missing one.
"""

from django.contrib import messages
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals.actions import ReviewRefused, do_decide_review
from approvals.models import Review
from approvals.review_access import access_review, pending_reviews_for, reviews_for, shown_status
from gateway_site.dashboard import PENDING_REVIEWS_SHOWN

HISTORY_SHOWN = 100
COMMENT_MAX = 2000
DECISIONS = {"approve": True, "deny": False}


def _with_shown_status(reviews, now) -> list[Review]:
    reviews = list(reviews)
    for review in reviews:
        review.shown_status = shown_status(review, now)
    return reviews


def _pending_context(user, now) -> dict:
    return {
        "pending_reviews": list(pending_reviews_for(user, now).order_by("created_at", "id")[:PENDING_REVIEWS_SHOWN])
    }


def review_list(request: HttpRequest) -> HttpResponse:
    """Pending reviews (with keyboard approve/deny) and the history, filtered by ?status=."""
    now = timezone.now()
    status = request.GET.get("status", "")
    if status not in Review.Status.values:
        status = ""
    history = reviews_for(request.user).order_by("-created_at", "-id")
    if status == Review.Status.EXPIRED:  # as shown: a pending review past its deadline is expired too
        history = history.filter(Q(status=status) | Q(status=Review.Status.PENDING, expires_at__lte=now))
    elif status == Review.Status.PENDING:
        history = history.filter(status=status, expires_at__gt=now)
    elif status:
        history = history.filter(status=status)
    context = _pending_context(request.user, now) | {
        "history": _with_shown_status(history[:HISTORY_SHOWN], now),
        "status": status,
        "statuses": Review.Status.choices,
        "now": now,
    }
    return render(request, "approvals/review_list.html", context)


def _visible_review(request: HttpRequest, public_id: str) -> Review:
    try:
        return access_review(request.user, public_id)
    except Review.DoesNotExist:
        raise Http404("No such review.") from None


def _detail_context(review: Review, now) -> dict:
    review.shown_status = shown_status(review, now)
    return {
        "review": review,
        "decisions": list(review.decisions.select_related("user")),
        "now": now,
    }


def review_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    review = _visible_review(request, public_id)
    return render(request, "approvals/review_detail.html", _detail_context(review, timezone.now()))


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


@require_POST
def review_decide(request: HttpRequest, public_id: str) -> HttpResponse:
    """Approve or deny (POST decision=approve|deny, optional comment); a refusal is shown with status 409.

    From an htmx button (the pending list) it answers with the refreshed
    pending list, or with the refusal for the page's flash area.
    """
    decision = request.POST.get("decision", "")
    comment = request.POST.get("comment", "").strip()
    if decision not in DECISIONS:
        return HttpResponseBadRequest("decision must be approve or deny")
    if len(comment) > COMMENT_MAX:
        return HttpResponseBadRequest(f"a comment may have at most {COMMENT_MAX} characters")
    try:
        review = do_decide_review(public_id, request.user, DECISIONS[decision], comment)
    except Review.DoesNotExist:
        raise Http404("No such review.") from None
    except ReviewRefused as refusal:
        return _refused(request, public_id, str(refusal))
    now = timezone.now()
    if _is_htmx(request):
        context = _pending_context(request.user, now) | {"user": request.user}
        return HttpResponse(render_to_string("gateway_site/_pending_reviews.html", context, request=request))
    verb = "approved" if DECISIONS[decision] else "denied"
    messages.success(request, f"You {verb} this statement; it is now {review.status}.")
    return redirect("reviews:detail", public_id=review.public_id)


def _refused(request: HttpRequest, public_id: str, message: str) -> HttpResponse:
    if _is_htmx(request):
        html = render_to_string("approvals/_flash.html", {"error": message}, request=request)
        return HttpResponse(html, status=409, headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
    review = _visible_review(request, public_id)
    context = _detail_context(review, timezone.now()) | {"error": message}
    return render(request, "approvals/review_detail.html", context, status=409)
