"""tasks.image picks the Debian mirrors the image is built from: the inventory's, else the
host's apt sources (AptSources fact in, mirror or a DeployError naming the key out)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pyinfra.api.exceptions import DeployError

from pgsteady.settings import HostFacts, Settings, build_settings
from tasks import image
from tasks.facts import AptSources

MAIN = "http://mirror.example/debian"
SECURITY = "http://mirror.example/debian-security"
FACTS = HostFacts(ram_mb=4096, cpus=2)
BOTH = f"deb {MAIN} bookworm main\ndeb {SECURITY} bookworm-security main\n"


def _with_sources(monkeypatch: pytest.MonkeyPatch, sources_list: str) -> None:
    """The host's apt sources as the AptSources fact returns them."""

    def get_fact(fact: type, **kwargs: object) -> dict:
        assert fact is AptSources and not kwargs
        return {"list": [sources_list], "deb822": []}

    monkeypatch.setattr(image, "host", SimpleNamespace(get_fact=get_fact))


def _settings(**data: object) -> Settings:
    return build_settings(data, FACTS)


def test_mirrors_come_from_the_hosts_apt_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_sources(monkeypatch, BOTH)
    s = _settings()
    assert (image._mirror(s), image._security_mirror(s)) == (MAIN, SECURITY)
    assert image._has_mirror(s)


def test_inventory_mirrors_win_over_the_apt_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_sources(monkeypatch, BOTH)
    s = _settings(
        postgres_debian_mirror="http://inv.example/debian",
        postgres_debian_security_mirror="http://inv.example/debian-security",
    )
    assert image._mirror(s) == "http://inv.example/debian"
    assert image._security_mirror(s) == "http://inv.example/debian-security"


@pytest.mark.parametrize(
    ("sources_list", "which", "message"),
    [
        ("", "_mirror", "needs a Debian mirror: .*; set postgres_debian_mirror "),
        (
            f"deb {MAIN} bookworm main\n",
            "_security_mirror",
            "builds with security updates: .*; set postgres_debian_security_mirror$",
        ),
    ],
)
def test_no_mirror_in_the_sources_names_the_key_to_set(
    monkeypatch: pytest.MonkeyPatch, sources_list: str, which: str, message: str
) -> None:
    _with_sources(monkeypatch, sources_list)
    s = _settings()
    with pytest.raises(DeployError, match=f"^postgres_image_source=debian {message}"):
        getattr(image, which)(s)
    assert not image._has_mirror(s)
