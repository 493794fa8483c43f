"""Schemes and their configuration, loaded from TOML files, and amounts in their currencies."""
