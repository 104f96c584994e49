"""Exports beyond the daily partitions: an ad-hoc range, filtered, written into the export store."""
