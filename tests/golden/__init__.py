"""The golden results database (``golden.db``) and the report outputs pinned on it."""
