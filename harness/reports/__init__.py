"""Reports built from the results store: JSON cells, tables (rich, markdown, CSV)."""
