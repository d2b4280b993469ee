"""Tornado request handlers, one module per surface: ingest, watch, api, pages."""
