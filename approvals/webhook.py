"""Tells a chat channel (or anything that takes a Slack-style webhook) that a statement waits for review.

`notify` never blocks the proxy: it queues the message. A worker posts it,
retrying with backoff when the receiver fails or is unreachable, and gives
up after a few tries (the review itself still waits, on the `reviews`
command and the reviewer pages). The body is Slack-compatible: `text`,
plus a `gatehouse` object with the review's fields for other receivers.
"""

import asyncio
import json
import logging
import urllib.error
import urllib.request

logger = logging.getLogger(__name__)

QUEUE_SIZE = 1000
ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 1.0
POST_TIMEOUT_SECONDS = 10.0


def review_message(review: dict) -> dict:
    """The webhook body for a pending review (`review`: id, agent, connection, rule, statement)."""
    statement = review["statement"]
    shown = statement if len(statement) <= 500 else statement[:500] + " ..."
    text = (
        f"Gatehouse: {review['agent']} on {review['connection']} waits for review (rule {review['rule']}):\n"
        f"```{shown}```\n"
        f"manage.py reviews approve {review['id']} --as YOU   (or: reviews deny)"
    )
    return {"text": text, "gatehouse": {"event": "review.requested", **review}}


class ReviewWebhook:
    """A queue and a worker that posts review messages to one URL."""

    def __init__(self, url: str, backoff: float = FIRST_BACKOFF_SECONDS) -> None:
        self.url = url
        self.backoff = backoff
        self.queue: asyncio.Queue[dict] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._post_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def notify(self, review: dict) -> None:
        """Queue a message about a pending review; drops it (with a log line) if the queue is full."""
        try:
            self.queue.put_nowait(review_message(review))
        except asyncio.QueueFull:
            logger.warning("review webhook queue is full; review %s is not announced", review["id"])

    async def _post_forever(self) -> None:
        while True:
            body = await self.queue.get()
            await self._deliver(body)

    async def _deliver(self, body: dict) -> None:
        data = json.dumps(body).encode()
        delay = self.backoff
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await asyncio.to_thread(self._post, data)
                return
            except (OSError, urllib.error.URLError) as exc:
                logger.warning("review webhook attempt %d of %d failed: %s", attempt, ATTEMPTS, exc)
            if attempt < ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        logger.error("review webhook gave up on review %s", body["gatehouse"]["id"])

    def _post(self, data: bytes) -> None:
        request = urllib.request.Request(  # noqa: S310 (an operator-configured http(s) URL)
            self.url, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=POST_TIMEOUT_SECONDS):  # noqa: S310
            pass  # any 2xx; urllib raises HTTPError (an OSError) for the rest
