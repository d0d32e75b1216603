"""Results: the SQLite store, latency statistics and quality scoring."""
