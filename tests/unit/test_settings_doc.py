"""group_data/all.py and docs/settings.md are generated from the Settings model, and current."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from pgsteady import settings_doc
from pgsteady.postgres.parameters import available_versions
from pgsteady.postgres.tuning import DB_TYPES, PG_VERSIONS
from pgsteady.settings import HostFacts, Settings, SettingsError, build_settings, defaults
from pgsteady.stack.image import POSTGRES_UID, SUITES

REPO = Path(__file__).resolve().parents[2]
OPERATOR_KEYS = [n for n in Settings.model_fields if not n.startswith("host_")]


@pytest.mark.parametrize("path", sorted(settings_doc.outputs()), ids=str)
def test_generated_files_are_current(path: Path) -> None:
    """A setting changed in pgsteady/settings.py without `make settings-docs` fails here."""
    expected = settings_doc.outputs()[path]
    assert (REPO / path).read_text(encoding="utf-8") == expected, (
        f"{path} is stale: run make settings-docs"
    )


def test_group_data_all_states_every_default() -> None:
    """pyinfra reads group_data/all.py as every host's data: exactly the defaults."""
    stated = {
        k: v
        for k, v in runpy.run_path(str(REPO / "group_data" / "all.py")).items()
        if not k.startswith("__")
    }
    assert stated == defaults()
    assert list(stated) == OPERATOR_KEYS


def test_check_reports_a_stale_file_and_writing_fixes_it(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(settings_doc, "ROOT", tmp_path)
    (tmp_path / "group_data").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "group_data" / "all.py").write_text("postgres_port = 5433\n")
    assert settings_doc.main(["--check"]) == 1
    assert "group_data/all.py: stale" in capsys.readouterr().out
    assert not (tmp_path / "docs" / "settings.md").exists()  # --check writes nothing
    assert settings_doc.main([]) == 0
    assert settings_doc.main(["--check"]) == 0
    assert (tmp_path / "docs" / "settings.md").read_text() == settings_doc.render_reference()


def test_every_setting_is_documented_in_a_section_with_what_it_accepts() -> None:
    listed = [name for _, _, fields in settings_doc.sections() for name, _ in fields]
    assert listed == OPERATOR_KEYS
    reference = settings_doc.render_reference()
    for name, field in Settings.model_fields.items():
        if name in OPERATOR_KEYS:
            assert field.description, name
            assert settings_doc.accepted(field), f"{name}: the reference says nothing accepted"
            assert f"| `{name}` |" in reference


@pytest.mark.parametrize(
    ("key", "fragment"),
    [("postgres_db_type", '"web" \\| "oltp" \\| "dw" \\| "desktop" \\| "mixed"'),
     ("postgres_port", "a whole number from 1 to 65535"),
     ("healthcheck_interval", "a duration above zero"),
     ("postgres_memory_limit", '"auto", or a size above zero'),
     ("backup_dir", "a normalised absolute path"),
     ("postgres_version", f"{PG_VERSIONS[0]} to {PG_VERSIONS[-1]}")],
)  # fmt: skip
def test_the_reference_lists_the_accepted_values(key: str, fragment: str) -> None:
    row = next(line for line in settings_doc.render_reference().splitlines() if f"`{key}`" in line)
    assert fragment in row.split(" | ")[-1]


def test_the_prose_of_off_host_repositories_is_in_both_files() -> None:
    for text in (settings_doc.render_group_data(), settings_doc.render_reference()):
        assert "survives the loss of this one" in text
        assert "inventory's `backup` group" in text
        assert "pgBackRest's TLS" in text


def test_versions_profiles_and_uid_are_defined_once() -> None:
    """The validator accepts the tuning core's versions and profiles (the parameter
    catalogs and the Debian image cover some of them); the uid default is the image's."""
    facts = HostFacts(ram_mb=8192, cpus=4)
    assert set(available_versions()) | set(SUITES) <= set(PG_VERSIONS)
    for version in (PG_VERSIONS[0] - 1, PG_VERSIONS[-1] + 1):
        with pytest.raises(SettingsError, match=f"{PG_VERSIONS[0]} to {PG_VERSIONS[-1]}"):
            build_settings({"postgres_version": version}, facts)
    for db_type in DB_TYPES:
        data = {"postgres_db_type": db_type, "pgbackrest_enabled": False}  # desktop: no WAL
        assert build_settings(data, facts).postgres_db_type == db_type
    with pytest.raises(SettingsError, match="postgres_db_type = 'batch'"):
        build_settings({"postgres_db_type": "batch"}, facts)
    assert defaults()["postgres_uid"] == POSTGRES_UID
