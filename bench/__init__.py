"""`make bench`: hookline's throughput and latency beside the machine's own ceiling, in one run.

Not an installed package: run from the repository root as `python -m bench.run` (which is
what `hookline bench` does). See README, "Performance".
"""
