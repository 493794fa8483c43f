"""Households, members and networks, and their phones."""
