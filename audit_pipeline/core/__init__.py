"""The small core every capability builds on: the 14 columns, the store layout, event filters, time and JSON text, errors and redaction."""
