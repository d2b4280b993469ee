"""The seam between ingest and everything downstream: the `Bus` interface and its implementations."""
