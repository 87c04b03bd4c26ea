"""Webhook intake: Syncro and Datto RMM routes under /api/notify (the webhook issue fills this)."""
