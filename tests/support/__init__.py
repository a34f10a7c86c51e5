"""Real parts for tests and benchmarks: a PostgreSQL cluster, gateway processes, free ports."""
