"""A service process's plumbing: health probes, heartbeats."""
