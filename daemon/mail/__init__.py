"""Email intake: SMTP listener, IMAP mailboxes and message parsing (the email issue fills this)."""
