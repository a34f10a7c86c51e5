"""Reviewer and requester pages for just-in-time access: the list with the request form, and one request.

Every read goes through the access request funnel (`get_access_request`,
`access_requests_for`) and every change through the `do_*` actions, so the
pages, the `access` command and the REST endpoint apply the same checks.
"""

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from approvals.access_request_actions import (
    AccessRefused,
    access_requests_for,
    allowed_moves,
    do_decide_access_request,
    do_request_access,
    do_revoke_grant,
    do_withdraw_access_request,
    format_seconds,
    get_access_request,
    max_access_seconds,
    pending_requests_to_decide,
    shown_status,
)
from approvals.models import COMMENT_MAX_LENGTH, REASON_MAX_LENGTH, AccessRequest
from connections.durations import DurationError, parse_duration
from connections.models import Connection

HISTORY_LIMIT = 50
PENDING_SHOWN = 50
MOVES = ("grant", "refuse", "revoke", "withdraw")
# Status -> the stylesheet's pill class (withdrawn stays plain).
PILLS = {"pending": "pending", "granted": "ok", "refused": "denied", "expired": "expired", "revoked": "danger"}


class AccessRequestForm(forms.Form):
    """Ask for access: the connection by name, why, and for how long ("2h")."""

    connection = forms.CharField(max_length=63)
    reason = forms.CharField(max_length=REASON_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3}))
    duration = forms.CharField(max_length=32, initial="1h", help_text="e.g. 30m, 2h, 1d")

    def clean_duration(self) -> int:
        try:
            return int(parse_duration(self.cleaned_data["duration"]).total_seconds())
        except DurationError as exc:
            raise ValidationError(str(exc)) from None


class DecisionForm(forms.Form):
    """One move on a request, with an optional comment."""

    move = forms.ChoiceField(choices=[(move, move) for move in MOVES])
    comment = forms.CharField(max_length=COMMENT_MAX_LENGTH, required=False)


@login_required
@require_http_methods(["GET", "POST"])
def access_list(request: HttpRequest) -> HttpResponse:
    """Pending requests to decide, the user's own requests, the history they may see; POST asks for access."""
    form = AccessRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        made = _request_from_form(request.user, form)
        if made is not None:
            return redirect(reverse("access:detail", args=[made.public_id]))
    visible = access_requests_for(request.user)
    others = visible.exclude(requester_id=request.user.pk).exclude(status=AccessRequest.Status.PENDING)
    context = {
        "form": form,
        "pending": _shown(pending_requests_to_decide(request.user)[:PENDING_SHOWN]),
        "mine": _shown(visible.filter(requester_id=request.user.pk)[:HISTORY_LIMIT]),
        "history": _shown(others[:HISTORY_LIMIT]),
        "longest": format_seconds(max_access_seconds()),
    }
    return render(request, "approvals/access_list.html", context, status=400 if form.errors else 200)


def _shown(requests) -> list[AccessRequest]:
    """The requests with `shown_status`, its `pill` style and `duration` set for the templates."""
    now = timezone.now()
    rows = list(requests)
    for row in rows:
        row.shown_status, row.duration = shown_status(row, now), format_seconds(row.duration_seconds)
        row.pill = PILLS.get(row.shown_status, "")
    return rows


def _request_from_form(user, form: AccessRequestForm) -> AccessRequest | None:
    """The new request, or None with the reason added to the form's errors."""
    data = form.cleaned_data
    try:
        return do_request_access(user, data["connection"], data["reason"], data["duration"])
    except Connection.DoesNotExist as exc:
        form.add_error("connection", str(exc))
    except ValidationError as exc:
        form.add_error(None, exc)
    except AccessRefused as exc:
        form.add_error(None, str(exc))
    return None


@login_required
@require_http_methods(["GET", "POST"])
def access_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    """One request, with the moves the user may make (grant, refuse, revoke, withdraw) as POST forms."""
    try:
        access_request = get_access_request(request.user, public_id)
    except AccessRequest.DoesNotExist:
        raise Http404("no such access request") from None
    error, status = "", 200
    if request.method == "POST":
        form = DecisionForm(request.POST)
        if not form.is_valid():
            error, status = "; ".join(message for messages in form.errors.values() for message in messages), 400
        else:
            try:
                _make_move(access_request, request.user, form.cleaned_data["move"], form.cleaned_data["comment"])
                return redirect(reverse("access:detail", args=[access_request.public_id]))
            except AccessRequest.DoesNotExist:
                raise Http404("no such access request") from None
            except AccessRefused as exc:
                error, status = str(exc), 409
            except ValidationError as exc:
                error, status = "; ".join(exc.messages), 400
            access_request.refresh_from_db()
    _shown([access_request])
    context = {
        "access_request": access_request,
        "moves": allowed_moves(access_request, request.user),
        "error": error,
    }
    return render(request, "approvals/access_detail.html", context, status=status)


def _make_move(access_request: AccessRequest, user, move: str, comment: str) -> AccessRequest:
    public_id = access_request.public_id
    if move == "withdraw":
        return do_withdraw_access_request(public_id, user)
    if move == "revoke":
        return do_revoke_grant(public_id, user)
    return do_decide_access_request(public_id, user, grant=move == "grant", comment=comment)


def pending_requests_fragment(user, oob: bool = False) -> str:
    """The `<section id="pending-requests">` of pending requests `user` may decide, for the dashboard and feed.

    With `oob`, the section is marked `hx-swap-oob="true"`, so the feed's htmx swaps it in by its id.
    """
    context = {"pending": _shown(pending_requests_to_decide(user)[:PENDING_SHOWN]), "oob": oob}
    return render_to_string("approvals/_pending_requests.html", context)
