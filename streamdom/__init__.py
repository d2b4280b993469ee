"""StreamDOM: live and recorded DOM session streaming (rrweb → Tornado → Parquet → viewer)."""

__version__ = "0.1.0"
