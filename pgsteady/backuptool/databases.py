"""Database-level operations in the container (exists, create private, drop, properties)."""

from __future__ import annotations

import json

from .docker import Docker
from .sql import ident, literal

RESERVED = ("template0", "template1", "postgres")


TEMP_PREFIX = "pgsteady_restore_"


REPLACED_PREFIX = "pgsteady_replaced_"


def database_exists(docker: Docker, name: str) -> bool:
    found = docker.psql(
        "postgres", f"SELECT 1 FROM pg_catalog.pg_database WHERE datname = {literal(name)}"
    )
    return found == "1"


def drop_database(docker: Docker, name: str) -> None:
    """Drop ``name``, disconnecting its sessions."""
    docker.psql("postgres", f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")


def create_database(docker: Docker, name: str, manifest: dict) -> None:
    """Create an empty, private database from template0 with the backup's encoding/locale.

    It is owned by the superuser and CONNECT is revoked from PUBLIC: only superusers can
    connect until the restore hands it over.
    """
    options = [f"TEMPLATE template0 ENCODING {literal(manifest.get('encoding', 'UTF8'))}"]
    if manifest.get("lc_collate"):
        options.append(f"LC_COLLATE {literal(manifest['lc_collate'])}")
    if manifest.get("lc_ctype"):
        options.append(f"LC_CTYPE {literal(manifest['lc_ctype'])}")
    docker.psql("postgres", f"CREATE DATABASE {ident(name)} {' '.join(options)}")
    docker.psql("postgres", f"REVOKE ALL ON DATABASE {ident(name)} FROM PUBLIC")


PROPERTIES_SQL = """
SELECT pg_catalog.json_build_object(
  'owner', pg_catalog.pg_get_userbyid(d.datdba),
  'connlimit', d.datconnlimit,
  'acl', CASE WHEN d.datacl IS NULL THEN NULL ELSE (
    SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
             'grantee', CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN NULL
                             ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
             'privilege', a.privilege_type, 'grantable', a.is_grantable)
             ORDER BY a.grantee, a.privilege_type), '[]'::pg_catalog.json)
    FROM pg_catalog.aclexplode(d.datacl) a) END,
  'settings', (
    SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
             'role', CASE WHEN s.setrole OPERATOR(pg_catalog.=) 0 THEN NULL
                          ELSE pg_catalog.pg_get_userbyid(s.setrole) END,
             'config', s.setconfig) ORDER BY s.setrole), '[]'::pg_catalog.json)
    FROM pg_catalog.pg_db_role_setting s WHERE s.setdatabase OPERATOR(pg_catalog.=) d.oid))
FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) %s
"""


def database_properties(docker: Docker, name: str) -> dict | None:
    """Owner, ACL entries, connection limit and SET settings of ``name`` (None: no such DB)."""
    out = docker.psql("postgres", PROPERTIES_SQL % literal(name))
    return json.loads(out) if out else None
