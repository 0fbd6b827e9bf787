"""The SQL the restore tool builds from catalog values the application role controls."""

from __future__ import annotations

import pytest

from pgsteady.backuptool.sql import handover_sql, setting_sql, split_guc_list


@pytest.mark.parametrize(
    ("flat", "items"),
    [
        ('"$user", public', ["$user", "public"]),
        ('public,"Other Schema" , x', ["public", "Other Schema", "x"]),
        ('"a,""b"', ['a,"b']),
        ("", []),
    ],
)
def test_split_guc_list(flat, items):
    assert split_guc_list(flat) == items


def test_settings_are_quoted_not_spliced():
    assert setting_sql("app", None, 'search_path="$user", public') == (
        """ALTER DATABASE "app" SET "search_path" TO '$user', 'public'"""
    )
    evil = "application_name=x'; ALTER ROLE app SUPERUSER; --"
    assert setting_sql("app", "app ro", evil) == (
        """ALTER ROLE "app ro" IN DATABASE "app" SET "application_name" TO """
        """'x''; ALTER ROLE app SUPERUSER; --'"""
    )
    assert setting_sql("app", None, 'my."x=y') == """ALTER DATABASE "app" SET "my.""x" TO 'y'"""


def test_handover_restores_owner_acl_and_settings():
    props = {
        "owner": "shop",
        "connlimit": 40,
        "acl": [
            {"grantee": "shop", "privilege": "CONNECT", "grantable": False},
            {"grantee": None, "privilege": "TEMPORARY", "grantable": False},
            {"grantee": 'we"ird', "privilege": "CONNECT", "grantable": True},
        ],
        "settings": [{"role": None, "config": ["work_mem=8MB"]}],
    }
    assert handover_sql("app", props) == [
        'ALTER DATABASE "app" OWNER TO "shop"',
        'ALTER DATABASE "app" CONNECTION LIMIT 40',
        'REVOKE ALL ON DATABASE "app" FROM PUBLIC',
        'REVOKE ALL ON DATABASE "app" FROM "shop"',
        'GRANT CONNECT ON DATABASE "app" TO "shop"',
        'GRANT TEMPORARY ON DATABASE "app" TO PUBLIC',
        'GRANT CONNECT ON DATABASE "app" TO "we""ird" WITH GRANT OPTION',
        """ALTER DATABASE "app" SET "work_mem" TO '8MB'""",
    ]
    default = handover_sql("app", {**props, "acl": None, "settings": []})
    assert default[-1] == 'GRANT CONNECT, TEMPORARY ON DATABASE "app" TO PUBLIC'
