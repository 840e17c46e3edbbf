"""The README keeps its promises: the two commands come first, every setting is documented."""

from pathlib import Path

from workers.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_two_commands_open_the_readme_and_ci_runs_the_test_command():
    head = README.split("\n## ")[0]
    assert "scripts/demo" in head and "scripts/test" in head
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "exec scripts/test" in ci


def test_every_setting_is_in_the_settings_table():
    missing = [f"STEPLOG_{name.upper()}" for name in Settings.model_fields if f"`STEPLOG_{name.upper()}`" not in README]
    assert missing == []
