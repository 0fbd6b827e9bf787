"""The major upgrade part's section and headline on docs/benchmarks.md."""

from bench.report import _upgrade, headlines

FIGURES = {
    "rows": 5_000_000,
    "database_bytes": 700 * 1024**2,
    "from_version": 15,
    "to_version": 17,
    "write_gap_seconds": 95.4,
    "deploy_seconds": 180.2,
    "phases_seconds": {"backup": 30.1, "restore": 50.2, "verify_analyze": 8.0, "start": 4.5},
    "ctl_write_downtime_seconds": 94.0,
    "writes_committed": 4000,
    "load": {"start": [1.0, 1.0, 1.0], "end": [2.0, 1.5, 1.2]},
}


def test_section_shows_each_phase_and_the_gap_the_app_saw():
    text = "\n".join(_upgrade(FIGURES))
    assert text.startswith("## Major version upgrade")
    assert "5,000,000 rows (700 MB) upgraded to 17" in text
    assert "| restore into the new volume by the new image | 50.2 s |" in text
    assert "| stack stopped → seen healthy (pgsteady-ctl's clock) | 94.0 s |" in text
    assert "| longest gap between committed writes (app view) | 95.4 s |" in text
    assert "Load average 1.0 / 1.0 / 1.0 at the upgrade's start" in text


def test_headline_names_the_downtime():
    (line,) = [h for h in headlines({"upgrade": FIGURES}) if h.startswith("Major upgrade")]
    assert line == (
        "Major upgrade 15 -> 17 of a 700 MB database: writes stopped for 95.4 s "
        "(longest gap between committed writes)"
    )
