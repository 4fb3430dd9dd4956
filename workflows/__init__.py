"""Temporal workflows: the invoice case and the portfolio replay driver."""
