"""Talking to functions while they run (placeholder; the API follows)."""
