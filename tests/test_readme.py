"""The README is part of the product: its configuration table must match the settings code."""

from __future__ import annotations

import re
from pathlib import Path

from config.settings import setting_docs

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `([A-Z_]+)` \| (.+?) \| (.+?) \|$")


def readme_settings() -> dict[str, tuple[str, str]]:
    rows = (ROW.match(line) for line in README.read_text().splitlines())
    return {m.group(1): (m.group(2), m.group(3)) for m in rows if m}


def test_every_setting_is_in_the_readme_table() -> None:
    documented = readme_settings()
    assert sorted(documented) == sorted(env for env, _, _ in setting_docs())


def test_readme_defaults_and_meanings_match_the_code() -> None:
    documented = readme_settings()
    for env, default, meaning in setting_docs():
        shown = "none" if default is None else f"`{default}`"
        assert documented[env] == (shown, meaning), env


def test_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "scripts/dev" in text and "scripts/test" in text
    assert "scripts/test" in (README.parent / ".ci" / "run").read_text()


def test_the_quick_start_lines_are_the_ones_dev_prints() -> None:
    """The README's curl lines work pasted: they are the banner's for the default ports, after
    the banner's `export TOKEN=...` line."""
    from relay.devtools.dev import try_it

    text = README.read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "$TOKEN" in b)
    shown = block.splitlines()
    printed = try_it("dev_TOKEN", "http://127.0.0.1:8000", 8001).splitlines()
    assert shown[0].startswith("export TOKEN=dev_") and printed[0] == "export TOKEN=dev_TOKEN"
    assert shown[1:] == printed[1:]


def test_the_readme_points_at_nothing_outside_the_repository() -> None:
    text = README.read_text()
    assert "../shared" not in text and "CONTRACT.md" not in text
    for link in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (README.parent / link).exists(), link
