"""The progress line on terminals and in logs, and the progress actor's queue."""

from __future__ import annotations

import io

from pipelines.common.progress import _Sink
from vloss.progress import ProgressLine


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_final_line_per_stage():
    out = io.StringIO()
    line = ProgressLine("evaluate", 10, unit="img", stream=out, every_s=3600)
    for _ in range(10):
        line.update(1, postfix="0 failed")
    line.message("[evaluate] a metrics line")
    line.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[evaluate] a metrics line"
    assert len(lines) == 2 and lines[1].startswith("[evaluate] ") and "10/10 img 100%" in lines[1]
    assert lines[1].endswith("0 failed")


def test_a_terminal_gets_one_line_redrawn_in_place():
    out = _Tty()
    line = ProgressLine("train", 4, unit="step", stream=out)
    line.set(2)
    line.message("[train] step 2/4 ...")
    line.set(4)
    line.close()
    text = out.getvalue()
    assert text.count("\n") == 2  # the message and the final line; every redraw starts with \r
    assert "4/4 step 100%" in text.rsplit("\r", 1)[1]  # the last redraw is the final state
    assert "\r\033[K[train] step 2/4 ...\n" in text


def test_unknown_total_and_the_sink_queue():
    out = io.StringIO()
    line = ProgressLine("shards", None, stream=out)
    line.update(3)
    line.close()
    assert "[shards] 3 it" in out.getvalue()
    sink = _Sink()
    sink.put({"step": 1})
    sink.put({"step": 2})
    assert sink.drain() == [{"step": 1}, {"step": 2}] and sink.drain() == []
