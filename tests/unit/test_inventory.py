"""Reading an inventory leaves this process alone (pyinfra's CLI patches with gevent)."""

from __future__ import annotations

from pathlib import Path

import gevent.monkey
import pytest

from pgsteady.inventory import InventoryError, load_inventory


def test_load_inventory_merges_group_data_without_patching_this_process(tmp_path: Path):
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text("app_dir = '/srv/pg'\npostgres_port = 5432\n")
    inventory = tmp_path / "inv.py"
    inventory.write_text("hosts = [('@local', {'postgres_port': 6000})]\n")
    [host] = load_inventory(inventory, cwd=tmp_path)
    assert host.name == "@local" and host.is_local
    assert host.data["app_dir"] == "/srv/pg"
    assert host.data["postgres_port"] == 6000
    assert not gevent.monkey.is_module_patched("threading")
    assert not gevent.monkey.is_module_patched("select")


def test_a_broken_inventory_is_a_clear_error(tmp_path: Path):
    inventory = tmp_path / "inv.py"
    inventory.write_text("hosts = [\n")
    with pytest.raises(InventoryError, match="cannot read inventory"):
        load_inventory(inventory, cwd=tmp_path)
