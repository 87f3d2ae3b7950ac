"""Launchers: how a provider's job starts workers on its nodes."""

__all__: list[str] = []
