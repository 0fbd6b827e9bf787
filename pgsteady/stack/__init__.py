"""The container stack on a host: compose file, image recipe, preflight checks,
scheduled jobs, file ownership rules and the host facts settings depend on."""
