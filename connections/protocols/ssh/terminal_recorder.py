"""What an SSH session's channels write into its recording, within the session's size cap.

Terminal traffic becomes asciicast events: `o` (output, stdout and stderr as
the terminal shows them), `i` (input) and `r` (resize, "WxH"). The first
terminal channel of a connection records under those plain kinds, so a
one-channel session (the usual `ssh host cmd` or shell) is an asciicast as
it stands; the Nth records as `o:N`, `i:N`, `r:N`, which the cast export
maps back per channel.

A `tail -f` must not fill the disk: every channel of a session draws on one
`RecordingBudget`, counted in bytes as they will stand in the file. Once it is spent, one `truncated` event says so and
terminal data is no longer recorded (commands, decisions, file operations
and the end still are).
"""

import codecs
from collections.abc import Callable

EventSink = Callable[[str, object], None]
# JSON writes a control character as \u00XX: six bytes on disk for one of output (tab, CR and LF take two).
_CONTROL_BYTES = bytes(set(range(0x20)) - set(b"\t\n\r"))
_CONTROL_EXTRA = 5


def recorded_size(data: bytes) -> int:
    """About what `data` takes in the recording file: binary output (a stream of NULs) costs six times its size."""
    return len(data) + _CONTROL_EXTRA * (len(data) - len(data.translate(None, _CONTROL_BYTES)))


class RecordingBudget:
    """The bytes of terminal data a session may still record; shared by its channels."""

    def __init__(self, sink: EventSink, max_bytes: int) -> None:
        self.sink = sink
        self.remaining = max_bytes
        self.max_bytes = max_bytes
        self.truncated = False

    def take(self, size: int) -> bool:
        """Whether `size` more bytes may be recorded; records `truncated` the first time they may not."""
        if size <= self.remaining:
            self.remaining -= size
            return True
        if not self.truncated:
            self.truncated = True
            self.remaining = 0
            self.sink("truncated", {"limit_bytes": self.max_bytes})
        return False


class TerminalRecorder:
    """One channel's o/i/r events; decodes UTF-8 incrementally so characters split across packets survive."""

    def __init__(self, budget: RecordingBudget, channel_number: int) -> None:
        self.budget = budget
        suffix = "" if channel_number == 1 else f":{channel_number}"
        self.output_kind, self.input_kind, self.resize_kind = f"o{suffix}", f"i{suffix}", f"r{suffix}"
        self._output = codecs.getincrementaldecoder("utf-8")("replace")
        self._input = codecs.getincrementaldecoder("utf-8")("replace")

    def output(self, data: bytes) -> None:
        self._record(self.output_kind, self._output, data)

    def input(self, data: bytes) -> None:
        self._record(self.input_kind, self._input, data)

    def resize(self, width: int, height: int) -> None:
        if not self.budget.truncated:
            self.budget.sink(self.resize_kind, f"{width}x{height}")

    def _record(self, kind: str, decoder: codecs.IncrementalDecoder, data: bytes) -> None:
        if self.budget.truncated or not self.budget.take(recorded_size(data)):
            return
        text = decoder.decode(data)
        if text:
            self.budget.sink(kind, text)
