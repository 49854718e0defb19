"""The three stages of a sync and their Celery tasks: fetch, render, apply."""
