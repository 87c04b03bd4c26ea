"""TOML rules engine for email intake (the email issue fills this); ships the example rules."""
