"""How the gateway holds a statement for review: ask for one, then wait for a decision, the timeout or a withdrawal.

The Review row is the source of truth, so a decision made anywhere (the
`reviews` command, a page, another node) reaches the held statement. The
waiter reads the outcome (one indexed query) whenever the review's group on
the channel layer announces a change, and every FALLBACK_POLL_SECONDS in
case an announcement was lost. A client that cancels or leaves withdraws
the review.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from approvals.actions import do_expire_review, do_request_review, do_withdraw_review, review_outcome
from gateway_site.broadcast import review_group

logger = logging.getLogger(__name__)

FALLBACK_POLL_SECONDS = 2.0


async def hold_for_review(
    verdict,
    *,
    connection_id: int,
    account_id: int | None,
    session_public_id: str,
    timeout: float,
    approvals: int,
    record: Callable[[str, object], None],
    announce: Callable[[dict], None] | None = None,
    context: dict | None = None,
):
    """The final verdict of a statement held under `verdict` (action "review"): allow or deny."""
    review = await database_sync_to_async(do_request_review)(
        connection_id=connection_id,
        session_public_id=session_public_id,
        account_id=account_id,
        rule=verdict.rule,
        statement=verdict.statement,
        timeout_seconds=timeout,
        approvals_required=approvals,
    )
    review_id = str(review.public_id)
    record("review", {"id": review_id, "rule": verdict.rule, "status": "pending", "approvals": approvals})
    if announce is not None:
        announce({"id": review_id, "rule": verdict.rule, "statement": verdict.statement, **(context or {})})
    try:
        status, decided_by, comment = await _outcome(review_id, timeout)
    except asyncio.CancelledError:
        asyncio.ensure_future(_withdraw(review_id))  # the client canceled the statement or left
        raise
    record("review", {"id": review_id, "status": status, "by": decided_by, "comment": comment})
    return _final_verdict(verdict, status, decided_by, comment, timeout)


async def _outcome(review_id: str, timeout: float) -> tuple[str, str, str]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = review_group(review_id)
    await layer.group_add(group, channel)  # before the first read, so no announcement falls between
    try:
        return await _wait_for_outcome(review_id, timeout, layer, channel)
    finally:
        await layer.group_discard(group, channel)


async def _wait_for_outcome(review_id: str, timeout: float, layer, channel: str) -> tuple[str, str, str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = await database_sync_to_async(review_outcome)(review_id)
        if outcome is not None:
            return outcome
        remaining = deadline - loop.time()
        if remaining <= 0:
            expired = await database_sync_to_async(do_expire_review)(review_id)
            return expired.status, expired.decided_by, expired.comment  # a decision may have won the race
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(FALLBACK_POLL_SECONDS, remaining)):
                await layer.receive(channel)


async def _withdraw(review_id: str) -> None:
    try:
        await database_sync_to_async(do_withdraw_review)(review_id, "the client canceled the statement or left")
    except Exception:
        logger.exception("could not withdraw review %s", review_id)


def _final_verdict(verdict, status: str, decided_by: str, comment: str, timeout: float):
    said = f": {comment}" if comment else ""
    if status == "approved":
        return replace(verdict, action="allow", message=f'rule "{verdict.rule}": approved by {decided_by}{said}')
    if status == "expired":
        reason = f"no reviewer decided within {timeout:g} s"
    elif status == "denied":
        reason = f"denied in review by {decided_by}{said}"
    else:
        reason = "the review was withdrawn"
    return replace(verdict, action="deny", message=f'Gatehouse denied this statement: rule "{verdict.rule}": {reason}')
