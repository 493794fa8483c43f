"""Flask blueprints: HTTP in, HTTP out. One module per channel."""
