"""relay.cli: help that explains, a version, and one line for a wrong setting."""

from __future__ import annotations

import argparse

import pytest

from relay.cli import main, parser
from relay.version import VERSION


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_and_option_has_help_text() -> None:
    root = parser()
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    assert [c.dest for c in sub._choices_actions] == ["api", "worker", "dev", "simulate", "inbox"]
    assert all(c.help for c in sub._choices_actions)
    for name, command in {"varg-relay": root, **commands()}.items():
        assert command.description, name
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}"


def test_help_describes_the_service_and_its_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "Webhooks for Varg generation jobs" in text
    assert "`varg-relay api | worker" not in text  # not the module's docstring
    for word in ("api", "worker", "dev", "simulate", "--version", "REDIS_URL",
                 "RELAY_API_TOKENS (comma-separated)", "RELAY_SIGNING_SECRETS (space-separated"):
        assert word in text, word


def test_command_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["dev", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 8000)" in text and "(default: 8001)" in text
    assert "(default: 127.0.0.1)" in text


def test_version_prints_the_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"varg-relay {VERSION}\n"


def test_a_missing_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_API_TOKENS", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["api"])
    assert exited.value.code == "varg-relay: RELAY_API_TOKENS is required but not set"
