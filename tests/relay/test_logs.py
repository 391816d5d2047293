"""relay.logs: no log line carries an unbounded text."""

from __future__ import annotations

import logging

import pytest

from relay.logs import LOG_MESSAGE_CAP, CapMessages, configure_logging


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("relay.test", logging.WARNING, __file__, 1, msg, args, None)


def test_a_long_message_is_cut_saying_how_much_was_left_out() -> None:
    long = record("attempt failed (%s)", "redirect to " + "L" * 60_000)
    assert CapMessages(100).filter(long) is True
    message = long.getMessage()
    assert message.startswith("attempt failed (redirect to LLL")
    assert message.endswith(f"... ({60_029 - 100} more characters)")
    assert len(message) < 140


def test_a_short_message_is_left_alone() -> None:
    short = record("job %s is %s", "job_1", "completed")
    CapMessages(100).filter(short)
    assert (short.msg, short.args) == ("job %s is %s", ("job_1", "completed"))


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configured_logging_caps_every_line(
    fmt: str, root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", fmt)
    logging.getLogger("relay.test").warning("status %s", "s" * 100_000)
    line = capsys.readouterr().err
    assert "more characters)" in line
    assert len(line) < LOG_MESSAGE_CAP + 500
