"""Temporal activities: the side effects a case asks for (sending, tasks, replay days)."""
