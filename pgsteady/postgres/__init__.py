"""The Postgres configuration: PGTune core and container-aware tuning, the server
parameter catalog, the rules that refuse unsafe overrides, and the rendered
postgresql.conf, pg_hba.conf and init_db.sql."""
