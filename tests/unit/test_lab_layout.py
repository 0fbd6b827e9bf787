"""The lab refuses layouts that cannot work before it starts any host container."""

from __future__ import annotations

import pytest

from pgsteady.lab.recipe import check_layout


@pytest.mark.parametrize(
    ("count", "backup_host", "cluster", "image_source", "says"),
    [
        (1, True, None, "debian", "a backup host needs at least 2 hosts"),
        (2, False, "lab", "debian", "a cluster lab needs at least 3 members"),
        (3, True, "lab", "debian", r"at least 3 members \(4 hosts with a backup host\)"),
        (3, False, "lab", "registry", "image source debian"),
    ],
)
def test_unworkable_layouts_are_refused(
    count: int, backup_host: bool, cluster: str | None, image_source: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        check_layout(count, backup_host, cluster, image_source)


@pytest.mark.parametrize(
    ("count", "backup_host", "cluster", "image_source"),
    [
        (1, False, None, "registry"),
        (2, True, None, "debian"),
        (3, False, "lab", "debian"),
        (4, True, "lab", "debian"),  # 3 members archiving into a backup host (issue 16)
    ],
)
def test_workable_layouts_pass(
    count: int, backup_host: bool, cluster: str | None, image_source: str
) -> None:
    check_layout(count, backup_host, cluster, image_source)
