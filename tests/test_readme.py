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


def test_every_place_in_the_where_it_happens_table_exists():
    """Each `path/file.py:function` the README names for an arrow of the step diagram is real."""
    import importlib
    import importlib.util
    import re

    section = README.split("### Where it happens", 1)[1].split("\n\n", 2)[1]
    places = re.findall(r"`([\w/]+\.py):([\w.]+)`", section)
    assert len(places) >= 12
    root = Path(__file__).resolve().parent.parent
    for path, qualname in places:
        if (root / path).parent.joinpath("__init__.py").exists():
            target = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        else:  # a migration: not importable by name
            spec = importlib.util.spec_from_file_location("readme_place", root / path)
            target = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(target)
        for part in qualname.split("."):
            assert hasattr(target, part), f"README names {path}:{qualname}, which does not exist"
            target = getattr(target, part)
