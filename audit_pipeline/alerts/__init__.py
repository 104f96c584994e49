"""Alerts: conditions that need an operator (a failed run or check, a lagging or stopped sink, dead letters, a
spike), sent once when they start and once when they clear, to Slack, a signed webhook or e-mail."""
