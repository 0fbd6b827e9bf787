"""Per-version Postgres parameter catalogs (pg<major>.tsv), made by scripts/gen-param-catalog."""
