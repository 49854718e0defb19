"""What both sides of fleetsync need: spec, settings, Celery app, Redis state, errors, logs, metrics."""
