"""Where sessions are read: one model of every session (live, not yet archived, archived) and its change feed."""
