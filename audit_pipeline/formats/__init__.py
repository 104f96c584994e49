"""The encoders: CSV, NDJSON and Parquet bytes exactly as the exports write them, and the read-ahead that feeds them."""
