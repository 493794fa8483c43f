"""The words: SMS templates and their translations, and how a text travels as SMS (GSM-7 or UCS-2)."""
