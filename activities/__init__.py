"""Temporal activities: the side effects a case asks for (sending, recording, starting)."""
