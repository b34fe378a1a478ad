"""What an operator needs to watch Learnexa run: health endpoints for a load balancer
(/healthz, /readyz), Prometheus metrics read from the database (/metrics), heartbeats of the
workers and schedulers, `learnexa status`, and logs a machine can read (log_context, JSON).

It reads the integration's tables through Django's app registry, not by importing them, so
that the integration's commands can call it (heartbeats) without an import cycle, and so
that it works, with fewer figures, where the integration is not installed.
"""
