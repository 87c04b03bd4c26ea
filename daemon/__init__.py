"""alertd: turns RMM alerts (email, webhooks, polling) into tickets and keeps both sides in step."""

__version__ = "0.1.0"
