"""pyinfra deploys, one module per capability; each is usable from another deploy."""
