"""templates/postgresql.conf.j2 and templates/pg_hba.conf.j2 rendering."""

import re

import pytest

from pgsteady.postgres.parameters import hba_rules
from pgsteady.postgres.tuning import Setting, TuningInput, tune
from pgsteady.render import render
from pgsteady.units import GIB

HEADER = "Managed by pgsteady - do not edit.\nRegenerated on every deploy."


def _conf(settings, overrides=None, **kw):
    ctx = {
        "settings": settings,
        "overrides": overrides or {},
        "listen_addresses": "*",
        "port": 5432,
        "hba_file": "/etc/pgsteady/pg_hba.conf",
        "header": HEADER,
    }
    ctx.update(kw)
    return render("postgresql.conf.j2", **ctx)


def _assignments(text):
    """(name, raw value) for every non-comment line."""
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition(" = ")
            out.append((name, value))
    return out


def test_conf_renders_every_setting_grouped_with_comments():
    result = tune(TuningInput(15, "web", 4 * GIB, 2))
    text = _conf(result.settings, {"statement_timeout": "30s"})
    assert text.startswith("# Managed by pgsteady - do not edit.\n# Regenerated on every deploy.\n")
    pairs = _assignments(text)
    names = [n for n, _ in pairs]
    assert names[:3] == ["listen_addresses", "port", "hba_file"]
    assert names[3:-1] == [s.name for s in result.settings]
    assert pairs[-1] == ("statement_timeout", "30s  # override")
    assert ("hba_file", "'/etc/pgsteady/pg_hba.conf'") in pairs
    assert ("listen_addresses", "'*'") in pairs
    assert ("shared_buffers", "1GB") in pairs
    assert ("password_encryption", "'scram-sha-256'") in pairs
    # the pgsteady group comes after the PGTune group, each line preceded by its reason
    lines = text.splitlines()
    pgtune_at = lines.index("# --- PGTune-compatible tuning ---")
    steady_at = lines.index("# --- pgsteady: additions to / deviations from PGTune ---")
    assert pgtune_at < lines.index("shared_buffers = 1GB") < steady_at
    i = lines.index("password_encryption = 'scram-sha-256'")
    assert lines[i - 1].startswith("# store only SCRAM")
    assert text.endswith("\n")


def test_conf_quotes_values_with_quotes_and_backslashes():
    settings = [Setting("application_name", "it's a \\ test", "why", "pgsteady")]
    text = _conf(settings, {"search_path": '"$user", public', "log_line_prefix": "%m '%u' "})
    assert "application_name = 'it''s a \\\\ test'" in text
    assert "search_path = '\"$user\", public'  # override" in text
    assert "log_line_prefix = '%m ''%u'' '  # override" in text


def test_conf_without_overrides_says_none():
    text = _conf([Setting("work_mem", "4MB")])
    assert "# (none)" in text
    assert "work_mem = 4MB" in text


def test_conf_template_rejects_unwritable_value():
    with pytest.raises(ValueError):
        _conf([], {"application_name": "a\nb"})


def _hba(networks, **kw):
    args = {"database": "app", "app_roles": ["app"], "monitor_role": "monitor", **kw}
    return hba_rules(networks, "postgres", **args)


def test_hba_renders_rules_and_never_trust():
    text = render("pg_hba.conf.j2", rules=_hba(["samenet", "10.0.0.0/8"], require_ssl=True))
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert rules[:6] == [
        ["local", "all", '"postgres"', "peer"],
        ["local", "all", '"pgsteady_restore"', "scram-sha-256"],
        ["host", "all", '"postgres"', "0.0.0.0/0", "reject"],
        ["host", "all", '"postgres"', "::/0", "reject"],
        ["hostnossl", "all", "all", "0.0.0.0/0", "reject"],
        ["hostnossl", "all", "all", "::/0", "reject"],
    ]
    assert ["hostssl", '"app"', '"app","monitor"', "10.0.0.0/8", "scram-sha-256"] in rules
    assert ["hostssl", '"postgres"', '"monitor"', "samenet", "scram-sha-256"] in rules
    assert rules[-1] == ["host", "all", "all", "::/0", "reject"]
    assert not any("trust" in rule for rule in rules)
    assert not re.search(r"^[^#].*\btrust\b", text, re.MULTILINE)


def test_conf_renders_tls_files():
    from pgsteady.postgres.conf_files import tls_settings

    text = _conf([Setting("work_mem", "4MB")], tls=tls_settings("/etc/pgsteady-tls"))
    pairs = _assignments(text)
    assert ("ssl", "on") in pairs
    assert ("ssl_cert_file", "'/etc/pgsteady-tls/server.crt'") in pairs
    assert ("ssl_key_file", "'/etc/pgsteady-tls/private/server.key'") in pairs
    assert ("ssl_ca_file", "'/etc/pgsteady-tls/ca.crt'") in pairs


def test_hba_optional_header():
    text = render("pg_hba.conf.j2", rules=_hba([]), header="Line one\nLine two")
    assert text.startswith("# Line one\n# Line two\n# First matching rule wins.")
