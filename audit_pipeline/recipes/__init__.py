"""One recipe per action: the functions the Dagster assets and the command line both call (export a day, sealed)."""
