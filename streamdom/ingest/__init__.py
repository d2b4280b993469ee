"""Where an event is validated: wire frames checked and turned into records, limits, acks."""
