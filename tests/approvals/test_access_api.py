"""The agents' REST endpoint for access requests, over real HTTP through Django's test client."""

import json
import logging
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from approvals.access_api import MAX_BODY_BYTES
from approvals.access_request_actions import do_decide_access_request, do_request_access
from approvals.models import AccessRequest
from connections.actions import do_grant_connect, do_issue_token, do_revoke_token
from connections.models import AccessToken

from .access_personas import REASON, make_access_personas

pytestmark = pytest.mark.urls("tests.approvals.access_urlconf")

URL = "/api/access-requests"
LOGIN_REQUIRED = "django.contrib.auth.middleware.LoginRequiredMiddleware"


@pytest.fixture
def personas(db, settings):
    # Every page needs login; the endpoint must still answer agents, who have no session.
    if LOGIN_REQUIRED not in settings.MIDDLEWARE:
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, LOGIN_REQUIRED]
    return make_access_personas()


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True)


def post(client: Client, token: str | None, body: object = None, *, raw: bytes | None = None, **extra):
    data = raw if raw is not None else json.dumps(body).encode()
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post(URL, data=data, content_type="application/json", **extra)


def asking(connection: str = "warehouse", duration: object = "2h", **more) -> dict:
    return {"connection": connection, "reason": REASON, "duration": duration, **more}


def test_it_makes_a_pending_request_for_the_tokens_agent(personas, client):
    response = post(client, personas.token, asking())
    assert response.status_code == 201, response.content
    body = response.json()
    made = AccessRequest.objects.get()
    assert body == {"id": str(made.public_id), "status": "pending", "connection": "warehouse", "duration_seconds": 7200}
    assert response["Location"] == f"{URL}/{made.public_id}"
    assert (made.requester, made.account, made.reason) == (personas.requester.user, personas.requester, REASON)
    assert AccessToken.objects.get().last_used_at is not None


def test_it_takes_a_duration_in_seconds(personas, client):
    response = post(client, personas.token, asking(duration=600))
    assert response.status_code == 201
    assert response.json()["duration_seconds"] == 600


def test_it_turns_away_requests_without_a_usable_token(personas, client):
    account = personas.requester
    expired_token_row, expired = do_issue_token(account, timedelta(hours=1))
    AccessToken.objects.filter(pk=expired_token_row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked_token_row, revoked = do_issue_token(account, timedelta(hours=1))
    do_revoke_token(revoked_token_row)
    prefix = personas.token.split("_")[1]
    bodies = set()
    for token in (None, expired, revoked, f"gh_{prefix}_wrong-secret", "gh_nosuchpf_secret", "garbage", "x" * 5000):
        response = post(client, token, asking())
        assert response.status_code == 401, token
        assert response["WWW-Authenticate"] == 'Bearer realm="gatehouse"'
        bodies.add(response.content)
    response = post(client, None, asking(), HTTP_AUTHORIZATION=f"Basic {personas.token}")
    assert response.status_code == 401
    bodies.add(response.content)
    assert len(bodies) == 1 and b"valid agent token is required" in bodies.pop()
    assert not AccessRequest.objects.exists()


def test_it_turns_away_an_inactive_agent(personas, client):
    personas.requester.user.is_active = False
    personas.requester.user.save()
    assert post(client, personas.token, asking()).status_code == 401


def test_it_never_logs_the_token(personas, client, caplog):
    caplog.set_level(logging.DEBUG)
    post(client, personas.token, asking())
    post(client, personas.token + "x", asking())
    secret = personas.token.split("_", 2)[2]
    assert caplog.records, "the request was logged"
    assert not [record for record in caplog.records if secret in record.getMessage()]


def test_it_explains_malformed_bodies(personas, client):
    cases = [
        (b"{not json", "the body is not valid JSON"),
        (b"\xff\xfe", "the body is not valid JSON"),
        (b"", "the body is not valid JSON"),
        (b'["warehouse"]', "the body must be a JSON object"),
        (json.dumps(asking(role="admin", sudo=True)).encode(), "unknown field(s): role, sudo"),
        (json.dumps({"connection": "warehouse"}).encode(), "missing field(s): reason, duration"),
        (json.dumps(asking(duration="forever")).encode(), "'forever' is not a duration"),
        (json.dumps(asking(duration=None)).encode(), '"duration" must be text'),
        (json.dumps(asking(duration="30s")).encode(), "access lasts 1m to 7d, not 30s"),
        (json.dumps(asking(reason=["x"])).encode(), '"connection" and "reason" must be text'),
        (json.dumps(asking(reason="  ")).encode(), "needs a reason"),
    ]
    for raw, message in cases:
        response = post(client, personas.token, raw=raw)
        assert response.status_code == 400, raw
        assert message in response.json()["error"], (raw, response.json())
    assert not AccessRequest.objects.exists()


def test_it_refuses_an_oversized_body(personas, client):
    padded = json.dumps(asking(reason="x" * MAX_BODY_BYTES)).encode()
    response = post(client, personas.token, raw=padded)
    assert response.status_code == 413
    assert response.json() == {"error": f"the body is larger than {MAX_BODY_BYTES} bytes"}
    assert not AccessRequest.objects.exists()


def test_it_answers_404_for_an_unknown_connection(personas, client):
    response = post(client, personas.token, asking("nowhere"))
    assert response.status_code == 404
    assert response.json() == {"error": "no connection named 'nowhere'"}


def test_it_answers_409_when_there_is_nothing_to_ask_for(personas, client):
    assert post(client, personas.token, asking()).status_code == 201
    again = post(client, personas.token, asking())
    assert again.status_code == 409
    assert "already has a pending request for warehouse" in again.json()["error"]
    do_grant_connect(personas.requester, personas.billing)
    standing = post(client, personas.token, asking("billing"))
    assert standing.status_code == 409
    assert standing.json()["error"] == "agent ci-bot may already connect to billing; there is nothing to ask for"


def test_it_shows_an_agent_its_own_request(personas, client):
    made = AccessRequest.objects.get(public_id=post(client, personas.token, asking()).json()["id"])
    headers = {"HTTP_AUTHORIZATION": f"Bearer {personas.token}"}
    response = client.get(f"{URL}/{made.public_id}", **headers)
    assert response.status_code == 200
    assert response.json()["status"] == "pending" and response.json()["granted_until"] is None
    do_decide_access_request(made.public_id, personas.reviewer, grant=True, comment="go ahead")
    body = client.get(f"{URL}/{made.public_id}", **headers).json()
    made.refresh_from_db()
    assert body["status"] == "granted"
    assert (body["decided_by"], body["comment"], body["duration"]) == ("alice", "go ahead", "2h")
    assert body["granted_until"] == made.granted_until.isoformat()


def test_it_hides_other_requests_from_an_agent(personas, client):
    theirs = do_request_access(personas.outsider, "warehouse", REASON, 3600)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {personas.token}"}
    answers = [client.get(f"{URL}/{public_id}", **headers) for public_id in (theirs.public_id, uuid.uuid4(), "nope")]
    assert [answer.status_code for answer in answers] == [404, 404, 404]
    assert [answer.json()["error"].split(" ")[:3] for answer in answers] == [["no", "access", "request"]] * 3
    assert client.get(f"{URL}/{theirs.public_id}").status_code == 401


def test_it_allows_only_post_on_the_list_and_get_on_one(personas, client):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {personas.token}"}
    assert client.get(URL, **headers).status_code == 405
    assert client.delete(f"{URL}/{uuid.uuid4()}", **headers).status_code == 405
