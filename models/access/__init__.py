"""Who may do what: staff, facility agents, API tokens, collection devices, rate limits."""
