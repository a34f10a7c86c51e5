"""Running a blocking client call in a thread while the test acts (approves, terminates) meanwhile."""

import threading
from collections.abc import Callable
from typing import Any


def in_background(work: Callable[[], Any], timeout: float) -> Callable[[], Any]:
    """Run `work` in a thread; the returned function joins it (within `timeout` s) and gives its result or error."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 (handed back to the test thread)
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> Any:
        thread.join(timeout)
        assert not thread.is_alive(), "the client is still waiting"
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    return join
