"""Payments as operators report them: intake, provider adapters, operator texts, statements, references."""
