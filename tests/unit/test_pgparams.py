"""pgsteady.postgres.parameters: catalog parsing, override validation, conf quoting, hba rules."""

import pytest

from pgsteady.postgres import parameters
from pgsteady.postgres.parameters import (
    HbaRule,
    Param,
    available_versions,
    check_value,
    conf_value,
    format_catalog,
    hba_rules,
    load_catalog,
    merge_catalog,
    needs_restart,
    normalize_network,
    param_context,
    parse_bool,
    parse_catalog,
    parse_describe_config,
    parse_pg_settings_csv,
    validate_overrides,
)

# Lines exactly as PostgreSQL 15's `postgres --describe-config` prints them.
DESCRIBE = (
    "huge_pages\tpostmaster\tResource Usage / Memory\tENUM\ttry\t\t\t"
    "Use of huge pages on Linux or Windows.\t\n"
    "jit\tuser\tQuery Tuning / Other Planner Options\tBOOLEAN\tFALSE\t\t\t"
    "Allow JIT compilation.\t\n"
    "shared_buffers\tpostmaster\tResource Usage / Memory\tINTEGER\t0\t16\t1073741823\t"
    "Sets the number of shared memory buffers used by the server.\t\n"
    "random_page_cost\tuser\tQuery Tuning / Planner Cost Constants\tREAL\t0\t0\t1.79769e+308\t"
    "Sets the planner's estimate of the cost of a nonsequentially fetched disk page.\t\n"
    "archive_command\tsighup\tWrite-Ahead Log / Archiving\tSTRING\t\t\t\t"
    'Sets the shell command that will be called to archive a WAL file.\tThis is used only if "x".\n'
)
SETTINGS_CSV = (
    'huge_pages,postmaster,enum,"","","","off,on,try",Resource Usage / Memory,Use of huge pages\n'
    'shared_buffers,postmaster,integer,8kB,16,1073741823,"",Resource Usage / Memory,Buffers\n'
    'pg_stat_statements.max,postmaster,integer,"",100,1073741823,"",Customized Options,Max\n'
)


def test_parse_describe_config():
    params = {p.name: p for p in parse_describe_config(DESCRIBE)}
    assert set(params) == {
        "huge_pages",
        "jit",
        "shared_buffers",
        "random_page_cost",
        "archive_command",
    }
    sb = params["shared_buffers"]
    assert (sb.context, sb.vartype, sb.min, sb.max) == ("postmaster", "integer", "16", "1073741823")
    assert params["jit"].vartype == "bool"
    assert params["huge_pages"].vartype == "enum"
    assert params["archive_command"].group == "Write-Ahead Log / Archiving"


def test_parse_describe_config_rejects_garbage():
    with pytest.raises(ValueError):
        parse_describe_config("not a describe-config line")


def test_merge_adds_units_enums_and_extension_params():
    merged = merge_catalog(parse_describe_config(DESCRIBE), parse_pg_settings_csv(SETTINGS_CSV))
    by_name = {p.name: p for p in merged}
    assert by_name["shared_buffers"].unit == "8kB"
    assert by_name["huge_pages"].enumvals == ("off", "on", "try")
    assert by_name["pg_stat_statements.max"].context == "postmaster"
    assert [p.name for p in merged] == sorted(by_name)
    assert parse_catalog(format_catalog(merged)) == by_name


def test_parse_catalog_rejects_bad_header():
    with pytest.raises(ValueError, match="catalog"):
        parse_catalog("a\tb\n")


def test_shipped_pg15_catalog():
    assert 15 in available_versions()
    catalog = load_catalog(15)
    assert len(catalog) > 300
    assert catalog["shared_buffers"] == Param(
        "shared_buffers",
        "postmaster",
        "integer",
        "8kB",
        "16",
        "1073741823",
        (),
        "Resource Usage / Memory",
        "Sets the number of shared memory buffers used by the server.",
    )
    assert "lz4" in catalog["wal_compression"].enumvals
    assert "pg_stat_statements.max" in catalog
    assert "auto_explain.log_min_duration" in catalog


def test_context_lookup():
    assert param_context(15, "max_connections") == "postmaster"
    assert param_context(15, "WORK_MEM") == "user"
    assert param_context(15, "log_line_prefix") == "sighup"
    assert param_context(15, "no_such_thing") is None
    assert needs_restart(15, "shared_buffers")
    assert not needs_restart(15, "work_mem")


def test_missing_catalog_is_an_error():
    assert validate_overrides(9, {"work_mem": "4MB"}) == [
        "postgres_settings: no parameter catalog for PostgreSQL 9 (shipped: "
        + ", ".join(map(str, available_versions()))
        + "); generate one with scripts/gen-param-catalog"
    ]
    with pytest.raises(ValueError):
        load_catalog(9)


GOOD = {
    "work_mem": "64MB",
    "shared_buffers": "2GB",
    "statement_timeout": "30s",
    "log_min_duration_statement": "250ms",
    "checkpoint_timeout": "15min",
    "random_page_cost": 1.5,
    "max_connections": 150,
    "jit": True,
    "synchronous_commit": "off",
    "huge_pages": "TRY",
    "wal_compression": "zstd",
    "track_io_timing": "yes",
    "search_path": '"$user", public',
    "application_name": "it's",
    "pg_stat_statements.max": "10000",
    "auto_explain.log_min_duration": "1s",
    "Work_Mem": "8MB",
    "effective_io_concurrency": "0x10",
    "vacuum_cost_delay": "2ms",
}


def test_valid_overrides_pass():
    assert validate_overrides(15, GOOD) == []


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        (
            "shared_bufers",
            "1GB",
            "unknown parameter for PostgreSQL 15; did you mean 'shared_buffers'",
        ),
        ("foo.bar", "1", "unknown parameter"),
        ("huge_pages", "maybe", "expected one of: off, on, try"),
        ("jit", "perhaps", "expected a boolean"),
        ("work_mem", "64mb", "unknown unit 'mb' (valid: B, kB, MB, GB, TB)"),
        ("statement_timeout", "30 seconds", "unknown unit 'seconds'"),
        ("max_connections", "0", "out of range; expected 1..262143"),
        ("max_connections", "100MB", "not allowed"),
        ("shared_buffers", "64kB", "out of range; expected 16..1073741823 (in 8kB)"),
        ("random_page_cost", "-1", "out of range"),
        ("work_mem", "lots", "not a number"),
        ("port", "5433", "cannot be overridden"),
        ("hba_file", "/tmp/x", "cannot be overridden"),
        ("block_size", "4096", "read-only"),
        ("application_name", "a\nb", "line break"),
        ("work_mem", None, "expected a single value"),
        ("checkpoint_completion_target", "inf", "expected a number in 0..1"),
    ],
)
def test_bad_overrides_name_key_value_and_accepted(key, value, fragment):
    errors = validate_overrides(15, {key: value})
    assert len(errors) == 1
    assert errors[0].startswith(f"postgres_settings[{key!r}] = {value!r}: ")
    assert fragment in errors[0]


def test_all_errors_reported_together():
    errors = validate_overrides(15, {"nope": "1", "jit": "x", "work_mem": "4MB"})
    assert len(errors) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on", True),
        ("OFF", False),
        ("t", True),
        ("fal", False),
        ("y", True),
        ("no", False),
        ("1", True),
        ("0", False),
        ("of", None),
        ("o", None),
        ("", None),
        ("2", None),
    ],
)
def test_parse_bool_follows_the_server(text, expected):
    assert parse_bool(text) is expected


def test_check_value_real_and_string():
    real = Param("x", "user", "real", "", "0", "1")
    assert check_value(real, "0.5") is None
    assert "out of range" in check_value(real, "1.5")
    assert check_value(Param("s", "user", "string"), "anything at all") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4GB", "4GB"),
        ("40329kB", "40329kB"),
        ("0.9", "0.9"),
        ("-1", "-1"),
        ("250ms", "250ms"),
        ("1.79769e+308", "1.79769e+308"),
        ("on", "on"),
        ("try", "try"),
        ("pg_stat_statements", "pg_stat_statements"),
        ("scram-sha-256", "'scram-sha-256'"),
        ("pg_stat_statements,auto_explain", "'pg_stat_statements,auto_explain'"),
        ("%m [%p] ", "'%m [%p] '"),
        ("it's", "'it''s'"),
        ("C:\\path", "'C:\\\\path'"),
        ('"$user", public', "'\"$user\", public'"),
        ("", "''"),
        ("/etc/pgsteady/pg_hba.conf", "'/etc/pgsteady/pg_hba.conf'"),
        ("a # b", "'a # b'"),
        (True, "on"),
        (False, "off"),
        (5432, "5432"),
        (1.1, "1.1"),
    ],
)
def test_conf_value(value, expected):
    assert conf_value(value) == expected


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b"])
def test_conf_value_rejects_line_breaks(value):
    with pytest.raises(ValueError, match="cannot be written"):
        conf_value(value)


def _rules(networks, superuser="postgres", **kw):
    args = {"database": "app", "app_roles": ["app"], "monitor_role": "monitor", **kw}
    return hba_rules(networks, superuser, **args)


def test_hba_rules_default():
    rules = _rules(["samenet"], app_roles=["app", "app_ro"])
    scram = "scram-sha-256"
    roles = '"app","app_ro","monitor"'
    assert rules == [
        HbaRule("local", "all", '"postgres"', "", "peer"),
        HbaRule("local", "all", '"pgsteady_restore"', "", scram),
        HbaRule("host", "all", '"postgres"', "0.0.0.0/0", "reject"),
        HbaRule("host", "all", '"postgres"', "::/0", "reject"),
        HbaRule("local", '"app"', roles, "", scram),
        HbaRule("local", '"postgres"', '"monitor"', "", scram),
        HbaRule("host", '"app"', roles, "127.0.0.1/32", scram),
        HbaRule("host", '"postgres"', '"monitor"', "127.0.0.1/32", scram),
        HbaRule("host", '"app"', roles, "::1/128", scram),
        HbaRule("host", '"postgres"', '"monitor"', "::1/128", scram),
        HbaRule("host", '"app"', roles, "samenet", scram),
        HbaRule("host", '"postgres"', '"monitor"', "samenet", scram),
        HbaRule("local", "all", "all", "", "reject"),
        HbaRule("host", "all", "all", "0.0.0.0/0", "reject"),
        HbaRule("host", "all", "all", "::/0", "reject"),
    ]


def test_hba_superuser_rejected_before_any_network_allow_rule():
    rules = _rules(["10.0.0.0/8"], require_ssl=True)
    network = [r for r in rules if r.type != "local"]
    assert [(r.user, r.address, r.method) for r in network[:2]] == [
        ('"postgres"', "0.0.0.0/0", "reject"),
        ('"postgres"', "::/0", "reject"),
    ]
    allowed = [r for r in rules if r.method != "reject" and r.type != "local"]
    assert not [r for r in allowed if "postgres" in r.user or r.user == "all"]
    assert not [r for r in allowed if r.database == "all"]


def test_hba_app_roles_reach_their_database_only():
    rules = _rules(["samenet"], app_roles=["app", "app_ro"])
    allow = [r for r in rules if r.method != "reject"]
    by_db = {r.database for r in allow if "app" in r.user.split(",")[0]}
    assert by_db == {'"app"'}
    assert {r.database for r in allow if r.user == '"monitor"'} == {'"postgres"'}
    assert not [r for r in allow if "template" in r.database]
    assert rules[-3:] == [
        HbaRule("local", "all", "all", "", "reject"),
        HbaRule("host", "all", "all", "0.0.0.0/0", "reject"),
        HbaRule("host", "all", "all", "::/0", "reject"),
    ]


def test_hba_require_ssl_rejects_plain_tcp_and_allows_hostssl_only():
    rules = _rules(["10.0.0.0/8"], require_ssl=True)
    assert rules[4:6] == [
        HbaRule("hostnossl", "all", "all", "0.0.0.0/0", "reject"),
        HbaRule("hostnossl", "all", "all", "::/0", "reject"),
    ]
    allow_tcp = {r.type for r in rules if r.method != "reject" and r.type != "local"}
    assert allow_tcp == {"hostssl"}
    plain = _rules(["10.0.0.0/8"])
    assert not [r for r in plain if r.type.startswith("hostnossl")]


@pytest.mark.parametrize("name", ["all", "replication", "sameuser", "samerole", "select"])
def test_hba_keyword_names_are_quoted(name):
    rules = _rules([], database=name, app_roles=[name])
    assert HbaRule("local", f'"{name}"', f'"{name}","monitor"', "", "scram-sha-256") in rules


def test_hba_rules_networks_normalized_and_deduplicated():
    rules = _rules(["10.0.0.0/8", "fd00::/8", "192.168.1.7", "127.0.0.1/32", "SAMEHOST"], "pg")
    addresses = [r.address for r in rules if r.type == "host" and r.database == '"app"']
    assert addresses == [
        "127.0.0.1/32",
        "::1/128",
        "10.0.0.0/8",
        "fd00::/8",
        "192.168.1.7/32",
        "samehost",
    ]
    assert all(r.method != "trust" for r in rules)


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("trust", "'trust' is never allowed"),
        ("TRUST", "'trust' is never allowed"),
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("example.com", "expected a CIDR"),
        ("all", "expected a CIDR"),
        ("10.0.0.0/33", "expected a CIDR"),
    ],
)
def test_hba_rules_reject_bad_networks(entry, fragment):
    with pytest.raises(ValueError, match="allowed network") as err:
        _rules([entry])
    assert fragment in str(err.value)
    with pytest.raises(ValueError):
        normalize_network(entry)


@pytest.mark.parametrize("user", ["all", "trust", "a b", "+group", "", "x\ny"])
def test_hba_rules_reject_bad_superuser(user):
    with pytest.raises(ValueError, match="superuser"):
        _rules([], user)


@pytest.mark.parametrize("kw", [{"database": "a b"}, {"app_roles": ["+grp"]}, {"app_roles": []},
                                {"monitor_role": "/regex"}])  # fmt: skip
def test_hba_rules_reject_bad_names(kw):
    with pytest.raises(ValueError):
        _rules([], **kw)


def test_managed_names_are_documented():
    assert all(reason for reason in parameters.MANAGED.values())


def test_version_specific_names():
    if 17 not in available_versions():
        pytest.skip("no PG17 catalog shipped")
    assert validate_overrides(17, {"transaction_timeout": "5min"}) == []
    assert "unknown parameter" in validate_overrides(15, {"transaction_timeout": "5min"})[0]


@pytest.mark.parametrize("version", available_versions())
@pytest.mark.parametrize("db_type", ["web", "oltp", "dw", "desktop", "mixed"])
def test_every_tuned_setting_is_valid_for_the_server(version, db_type):
    from pgsteady.postgres.tuning import TuningInput, tune
    from pgsteady.units import GIB

    for ram, cpus, limit in ((GIB, 1, None), (64 * GIB, 16, None), (64 * GIB, 16, 2 * GIB)):
        values = tune(TuningInput(version, db_type, ram, cpus, memory_limit=limit)).as_dict()
        assert validate_overrides(version, values) == []
