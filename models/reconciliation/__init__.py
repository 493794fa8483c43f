"""Reconciliation: matching payments to households, batch allocation, staff actions on payments."""
