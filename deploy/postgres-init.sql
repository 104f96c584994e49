-- The pipeline's own state (sink positions, leases) beside Dagster's storage, in its own database.
CREATE DATABASE audit_state;
