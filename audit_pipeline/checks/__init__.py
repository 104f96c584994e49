"""The per-day check pass: what the published objects of a day are, judged without parsing them."""
