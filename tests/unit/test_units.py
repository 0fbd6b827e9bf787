"""pgsteady.units: size parsing and PGTune-style formatting."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgsteady.units import (
    GIB,
    KIB,
    MIB,
    TIB,
    format_bytes,
    format_kb,
    human_duration,
    human_size,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16GB", 16 * GIB),
        ("16gb", 16 * GIB),
        ("16 GB", 16 * GIB),
        ("512MB", 512 * MIB),
        ("40329kB", 40329 * KIB),
        ("40329KB", 40329 * KIB),
        ("1TB", TIB),
        ("2g", 2 * GIB),
        ("1.5GiB", 3 * GIB // 2),
        ("1048576", 1048576),
        ("1048576B", 1048576),
        ("0", 0),
        (4096, 4096),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "16XB", "-1GB", "1.2.3GB", "16 G B", "abc", None, 1.5])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_parse_size_rejects_negative_int_and_bool():
    with pytest.raises(ValueError):
        parse_size(-5)
    with pytest.raises(ValueError):
        parse_size(True)


@pytest.mark.parametrize(
    ("kb", "expected"),
    [
        (4194304, "4GB"),
        (1048576, "1GB"),
        (262144, "256MB"),
        (40329, "40329kB"),
        (7864, "7864kB"),
        (4096, "4MB"),
        (32, "32kB"),
        (0, "0GB"),
    ],
)
def test_format_kb_matches_pgtune_style(kb, expected):
    assert format_kb(kb) == expected


def test_format_bytes():
    assert format_bytes(16 * GIB) == "16GB"
    assert format_bytes(1536 * MIB) == "1536MB"
    assert format_bytes(3) == "3B"


def test_human_size():
    assert human_size(16 * GIB) == "16GB"
    assert human_size(1536 * MIB) == "1.5GB"
    assert human_size(10) == "10B"


@given(st.integers(min_value=0, max_value=2**50))
def test_format_then_parse_roundtrips(kb):
    assert parse_size(format_kb(kb)) == kb * KIB


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (5.4, "5s"), (125, "2m 5s"), (3600, "1h"), (3720, "1h 2m"),
     (93784, "1d 2h"), (86400, "1d"), (-125, "-2m 5s")],
)  # fmt: skip
def test_human_duration_is_one_format_for_verify_and_monitor(seconds, text):
    assert human_duration(seconds) == text
