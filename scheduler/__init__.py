"""APScheduler jobs that call domain use cases (deadline sweeps, follow-ups, digests)."""
