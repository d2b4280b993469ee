"""The web surface: the Tornado app, its services, and one handler module per route group."""
