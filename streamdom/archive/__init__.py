"""The archive: write-ahead log, Parquet flushes, layout, catalog, queries, maintenance."""
