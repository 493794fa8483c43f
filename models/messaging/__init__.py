"""SMS in and out: the message log, the outbox, inbound commands, renewal reminders."""
