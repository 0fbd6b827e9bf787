"""The lab's pure parts: names, apt sources for another suite, subnets, inventory text."""

from __future__ import annotations

import ast

import pytest

from pgsteady.lab.recipe import (
    backup_group_data,
    check_count,
    check_name,
    check_suite,
    host_data,
    host_image_tag,
    host_ip,
    host_names,
    known_hosts_line,
    pick_subnet,
    recipe_hash,
    render_inventory,
    rewrite_sources,
)

DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/bookworm-20250520
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_sources_for_another_suite_rename_every_suite_and_keep_comments_and_uris() -> None:
    out = rewrite_sources(DEB822, "bookworm", "trixie")
    assert "Suites: trixie trixie-updates" in out
    assert "Suites: trixie-security" in out
    assert "# http://snapshot.example/archive/debian/bookworm-20250520" in out
    assert "bookworm" not in out.replace("# http://snapshot.example/archive/debian/bookworm", "")
    one_line = "deb [signed-by=/k.gpg] http://m.example/debian bookworm main\n"
    assert rewrite_sources(one_line, "bookworm", "trixie").split()[3] == "trixie"
    assert rewrite_sources(DEB822, "bookworm", "bookworm") == DEB822


def test_recipe_hash_follows_suite_and_sources() -> None:
    base = recipe_hash("bookworm", [("debian.sources", DEB822)])
    assert base == recipe_hash("bookworm", [("debian.sources", DEB822)])
    assert base != recipe_hash("trixie", [("debian.sources", DEB822)])
    assert base != recipe_hash("bookworm", [("debian.sources", DEB822 + "\n")])
    assert host_image_tag("bookworm", base) == f"pgsteady/lab-host:bookworm-{base[:12]}"


def test_subnet_avoids_every_used_network() -> None:
    assert pick_subnet([]) == "10.77.0.0/24"
    assert pick_subnet(["10.77.0.0/24", "10.77.1.0/25", "172.17.0.0/16"]) == "10.77.2.0/24"
    assert pick_subnet(["10.77.0.0/23"]) == "10.77.2.0/24"
    with pytest.raises(RuntimeError, match="no free /24"):
        pick_subnet(["10.0.0.0/8"])
    assert host_ip("10.77.3.0/24", 1) == "10.77.3.10"
    assert host_ip("10.77.3.0/24", 3) == "10.77.3.12"


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_name, "Lab_1", "lower-case"),
        (check_name, "-lab", "lower-case"),
        (check_suite, "sid", "bookworm, trixie"),
        (check_count, 0, "1 to 50"),
        (check_count, True, "1 to 50"),
    ],
)
def test_bad_lab_parameters_are_named(check, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        check(value)


def test_inventory_reaches_hosts_over_ssh_with_strict_host_keys() -> None:
    names = host_names("lab", 2)
    assert names == ["lab-1", "lab-2"]
    image = {"postgres_image_source": "archive", "postgres_image_archive": "/root/pg.tar"}
    hosts = [
        (n, host_data(host_ip("10.77.5.0/24", i), "10.77.5.0/24", "/k", "/kh", image))
        for i, n in enumerate(names, 1)
    ]
    text = render_inventory("lab", hosts)
    tree = ast.parse(text)
    namespace: dict = {}
    exec(compile(tree, "inventory", "exec"), namespace)  # the file pyinfra will import
    assert namespace["LAB"] == "lab"
    (name, data), _ = namespace["hosts"]
    assert name == "lab-1"
    assert data["ssh_hostname"] == "10.77.5.10" == data["postgres_bind"]
    assert data["ssh_strict_host_key_checking"] == "yes"
    assert data["ssh_known_hosts_file"] == "/kh"
    assert data["postgres_allowed_networks"] == ["10.77.5.0/24"]
    assert data["postgres_image_archive"] == "/root/pg.tar"


def test_a_backup_host_is_its_own_group_and_every_host_names_it() -> None:
    data = {"postgres_bind": "10.77.5.10", **backup_group_data("lab-2")}
    text = render_inventory("lab", [("lab-1", data), ("lab-2", data)], {"backup": ["lab-2"]})
    namespace: dict = {}
    exec(compile(ast.parse(text), "inventory", "exec"), namespace)
    assert [n for n, _d in namespace["hosts"]] == ["lab-1"]
    assert [n for n, _d in namespace["backup"]] == ["lab-2"]
    repos = namespace["hosts"][0][1]["pgbackrest_repos"]
    assert repos == [{"kind": "posix"}, {"kind": "host", "host": "lab-2"}]
    with pytest.raises(ValueError, match="identifier"):
        render_inventory("lab", [("lab-1", data)], {"not-a-name": ["lab-1"]})


def test_known_hosts_line_comes_from_the_host_key_file() -> None:
    line = known_hosts_line("10.77.0.10", "ssh-ed25519 AAAAC3Nz root@lab-1\n")
    assert line == "10.77.0.10 ssh-ed25519 AAAAC3Nz"
    with pytest.raises(ValueError):
        known_hosts_line("10.77.0.10", "garbage")


def test_a_cluster_lab_with_a_backup_host_archives_into_it_and_keeps_it_out() -> None:
    from pgsteady.lab.recipe import check_layout, for_host, layout_data

    check_layout(4, True, "lab", "debian")  # 3 members and the backup host
    with pytest.raises(ValueError, match="at least 3 members"):
        check_layout(3, True, "lab", "debian")
    data = layout_data("lab-4", "lab")
    assert data["pgbackrest_enabled"] is True
    assert data["pgbackrest_repos"] == [{"kind": "host", "host": "lab-4"}]  # no posix
    assert data["postgres_cluster_name"] == "lab"
    assert "postgres_cluster_name" not in for_host(data, backup_host=True)
    assert for_host(data, backup_host=False) is data
    assert layout_data(None, "lab")["pgbackrest_enabled"] is False  # no repository to share
    assert layout_data("lab-2", None)["pgbackrest_repos"][0] == {"kind": "posix"}
