"""pgsteady: production-grade PostgreSQL on your own hosts, converged with pyinfra."""
