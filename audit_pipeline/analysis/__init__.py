"""Reading the Parquet archive back: ad-hoc SQL for analysts and the daily security summary."""
