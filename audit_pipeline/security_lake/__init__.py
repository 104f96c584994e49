"""OCSF exports for Amazon Security Lake: the day's Parquet export mapped to OCSF, one Parquet object per class.

:mod:`.columns` is the fixed Parquet schema of each class, :mod:`.export` writes and publishes a day
(with its manifest), :mod:`.checks` proves a published day from the Parquet footers alone.
"""
