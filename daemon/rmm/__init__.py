"""Datto RMM and Syncro API clients (the RMM clients issue fills this)."""
