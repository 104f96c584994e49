"""Security schemas the sinks and exports can speak: OCSF (Amazon Security Lake, Splunk's OCSF add-on,
Datadog, webhooks), ECS (Elasticsearch) and Splunk's CIM.

Each mapping takes an Arrow batch of audit events (after a sink's privacy settings) and the
events' NDJSON lines, and returns the mapped documents; the sinks deliver them as they deliver
the raw lines.  One module per target; the OCSF class/activity table is in :mod:`.ocsf_table`.
"""
