"""Intake: every channel's input enters here (`Pipeline.submit` / `Pipeline.ingest`), is stored
as a delivery, interpreted and applied to the alert lifecycle."""
