import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from connections.models import Connection, ServiceAccount
from recordings.models import Session

RULE_MAX_LENGTH = 100
DECIDED_BY_MAX_LENGTH = 1000


class Review(models.Model):
    """A statement held by a `review` guardrail until reviewers approve or deny it, or it times out.

    The gateway creates it (`approvals.actions.do_request_review`) with the
    statement already masked, then polls `review_outcome` until it is no
    longer pending. Reviewers decide through `do_decide_review`, which asks
    the connection funnel for the `review` permission and enforces four
    eyes; each reviewer's vote is a `ReviewDecision`. `decided_by` names
    who settled it: reviewer usernames (comma-joined for N approvals),
    "timeout" or "client" (withdrawn by a cancel or a disconnect).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        DENIED = "denied"
        EXPIRED = "expired"
        WITHDRAWN = "withdrawn"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="reviews")
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews")
    account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews"
    )
    rule = models.CharField(max_length=RULE_MAX_LENGTH, help_text="The guardrail that asked for the review.")
    statement = models.TextField(help_text="As the client sent it, with literals and parameters masked.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField(help_text="No decision by then means denied.")
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=DECIDED_BY_MAX_LENGTH, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "connection"], name="review_status_connection_idx")]

    def __str__(self) -> str:
        return f"review {self.public_id} ({self.status})"


class ReviewDecision(models.Model):
    """One reviewer's vote on a review; a reviewer votes at most once per review.

    PROTECT on the user: a vote is audit evidence, so a reviewer who has
    voted is deactivated rather than deleted.
    """

    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_decisions")
    approve = models.BooleanField()
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["review", "user"], name="one_decision_per_reviewer")]

    def __str__(self) -> str:
        verb = "approved" if self.approve else "denied"
        return f"{self.user} {verb} {self.review.public_id}"


REASON_MAX_LENGTH = 1000
COMMENT_MAX_LENGTH = 1000
MIN_ACCESS_SECONDS = 60


class AccessRequest(models.Model):
    """A just-in-time request to use a connection for a while; once granted, it is the time-bound permission.

    Someone without standing `connect` on a connection (a person, or an
    agent through its backing user) asks for it with a reason and a
    duration. A reviewer of the connection grants or refuses it through
    `approvals.access_request_actions`, never their own (four eyes). A
    granted row whose `granted_until` lies ahead lets the requester connect:
    the connection funnel (`connections.access`) and the gateway's login
    lookup both read it, so nothing has to be removed when it ends. The
    sweeper marks it expired afterwards and, if the connection says so,
    ends the sessions it allowed; a reviewer may revoke it earlier
    (`ended_by`). `decided_by` and `ended_by` are usernames, kept as text
    so the record outlives the accounts.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        GRANTED = "granted"
        REFUSED = "refused"
        EXPIRED = "expired"
        REVOKED = "revoked"
        WITHDRAWN = "withdrawn"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="access_requests")
    # CASCADE: deleting an agent deletes its user; its requests go with it (the decisions name people as text).
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_requests")
    account = models.ForeignKey(
        ServiceAccount,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="access_requests",
        help_text="The agent that asked, when an agent asked.",
    )
    reason = models.TextField(max_length=REASON_MAX_LENGTH)
    duration_seconds = models.PositiveIntegerField(help_text="How long a grant lasts, from the moment it is given.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True)
    comment = models.TextField(blank=True, max_length=COMMENT_MAX_LENGTH)
    granted_from = models.DateTimeField(null=True, blank=True)
    granted_until = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=150, blank=True, help_text="The reviewer who revoked the grant early.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The grant lookup of the funnel and the gateway login: status, connection, requester, then time.
            models.Index(
                fields=["status", "connection", "requester", "granted_until"], name="access_request_grant_idx"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["requester", "connection"],
                condition=models.Q(status="pending"),
                name="one_pending_access_request",
            ),
        ]

    def __str__(self) -> str:
        return f"access request {self.public_id} ({self.status})"
