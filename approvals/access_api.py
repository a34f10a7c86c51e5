"""The REST endpoint agents use to ask for just-in-time access, authenticated by their gateway token.

`POST /api/access-requests` with `Authorization: Bearer gh_<prefix>_<secret>`
and `{"connection": ..., "reason": ..., "duration": "2h"}` makes a pending
request; `GET /api/access-requests/<id>` reads one of the agent's own.
Errors are JSON `{"error": ...}`. The token is never logged.
"""

import hmac
import json
import logging
import uuid

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from approvals.access_request_actions import AccessRefused, do_request_access, format_seconds, shown_status
from approvals.models import AccessRequest
from connections.access import record_token_use
from connections.durations import DurationError, parse_duration
from connections.models import AccessToken, Connection, ServiceAccount
from connections.tokens import SCHEME, hash_token

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024
MAX_TOKEN_CHARS = 256
FIELDS = ("connection", "reason", "duration")
# Compared against when the prefix is unknown, so a miss costs what a wrong secret costs.
_NO_HASH = "0" * 64
UNAUTHORIZED = "a valid agent token is required: Authorization: Bearer gh_<prefix>_<secret>"


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="gatehouse"'
    return response


def authenticated_account(request: HttpRequest) -> ServiceAccount | None:
    """The agent whose unrevoked, unexpired token the request carries as a Bearer token; None otherwise."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != SCHEME or not parts[1]:
        return None
    stored = AccessToken.objects.select_related("account__user").filter(prefix=parts[1]).first()
    matches = hmac.compare_digest(hash_token(token), stored.token_hash if stored else _NO_HASH)
    now = timezone.now()
    if stored is None or not matches or stored.revoked or stored.expires_at <= now:
        return None
    if not stored.account.user.is_active:
        return None
    record_token_use([stored.pk], now)
    return stored.account


def _read_json_object(request: HttpRequest) -> dict | JsonResponse:
    """The body as a JSON object with only known fields, or the error response to send."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit():
        return _error(400, "the Content-Length header must be a number")
    if int(declared) > MAX_BODY_BYTES:
        return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(400, f"the body is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return _error(400, "the body must be a JSON object")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        return _error(400, f"unknown field(s): {', '.join(unknown)}; expected {', '.join(FIELDS)}")
    return data


def _duration_seconds(value: object) -> int:
    """Seconds from "2h"-style text (connections.durations) or a whole number of seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValidationError('"duration" must be text such as "2h" or a number of seconds')
    try:
        return int(parse_duration(value).total_seconds())
    except DurationError as exc:
        raise ValidationError(str(exc)) from None


def _as_json(request: AccessRequest, *, detail: bool = False) -> dict:
    data = {
        "id": str(request.public_id),
        "status": shown_status(request),
        "connection": request.connection.name,
        "duration_seconds": request.duration_seconds,
    }
    if detail:
        data.update(
            duration=format_seconds(request.duration_seconds),
            reason=request.reason,
            created_at=request.created_at.isoformat(),
            decided_at=request.decided_at.isoformat() if request.decided_at else None,
            decided_by=request.decided_by or None,
            comment=request.comment,
            granted_from=request.granted_from.isoformat() if request.granted_from else None,
            granted_until=request.granted_until.isoformat() if request.granted_until else None,
        )
    return data


@csrf_exempt  # token authentication, no cookies: nothing for a forged cross-site form to ride on
@login_not_required
@require_POST
def access_requests_api(request: HttpRequest) -> JsonResponse:
    """Make a pending access request for the token's agent; 201 with its id and status."""
    account = authenticated_account(request)
    if account is None:
        return _error(401, UNAUTHORIZED)
    data = _read_json_object(request)
    if isinstance(data, JsonResponse):
        return data
    missing = [name for name in FIELDS if name not in data]
    if missing:
        return _error(400, f"missing field(s): {', '.join(missing)}")
    if not isinstance(data["connection"], str) or not isinstance(data["reason"], str):
        return _error(400, '"connection" and "reason" must be text')
    try:
        made = do_request_access(
            account.user, data["connection"], data["reason"], _duration_seconds(data["duration"]), account=account
        )
    except ValidationError as exc:
        return _error(400, "; ".join(exc.messages))
    except Connection.DoesNotExist as exc:
        return _error(404, str(exc))
    except AccessRefused as exc:
        return _error(409, str(exc))
    response = JsonResponse(_as_json(made), status=201)
    response["Location"] = f"{request.path.rstrip('/')}/{made.public_id}"
    return response


@csrf_exempt
@login_not_required
@require_GET
def access_request_api(request: HttpRequest, public_id: str) -> JsonResponse:
    """One of the token agent's own requests; anyone else's, or a malformed id, is 404."""
    account = authenticated_account(request)
    if account is None:
        return _error(401, UNAUTHORIZED)
    try:
        parsed = uuid.UUID(public_id)
        found = AccessRequest.objects.select_related("connection").get(public_id=parsed, requester_id=account.user_id)
    except (ValueError, AccessRequest.DoesNotExist):
        return _error(404, f"no access request {public_id}")
    return JsonResponse(_as_json(found, detail=True))
