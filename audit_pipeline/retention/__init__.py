"""Retention that can never delete what has not been safely exported.

- :mod:`.policy`: the ``retention:`` section (durations, plan presets, legal hold) and its checks;
- :mod:`.plan`: what is past the policy and, per database day, whether it may go (the dry run);
- :mod:`.export_check`: whether a day's exports exist, are complete and verify;
- :mod:`.backlog`: the days enabled sinks have not delivered yet;
- :mod:`.database`: batched deletes by exported id, each statement committed;
- :mod:`.export_objects`: export objects past their format's policy, retired so that verify passes;
- :mod:`.elasticsearch`: daily indices past the policy, by exact name;
- :mod:`.record`: ``retention/date=YYYY-MM-DD.json`` and the guard that stops emptier backfills;
- :mod:`.run`: one run, in a safe order, idempotent when repeated or interrupted.
"""
