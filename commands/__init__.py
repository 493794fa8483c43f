"""`flask --app app …` command groups."""
