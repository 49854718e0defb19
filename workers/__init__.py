"""The workers: everything that touches Git, renderers and Kubernetes clusters.

The rooms, from the bottom up (checked by import-linter, see pyproject.toml):

    sealing   authenticated encryption of render entries and signed internal tasks
    fetch/    getting content: Git sources, Helm repositories
    render/   turning a tree into objects: directories, kustomize, Helm, SOPS, variables, cache
    apply/    plan as data, server-side apply, prune, health verdicts, inventory
    context   the per-process composition root: settings, clients, caches
    run/      one run of a sync unit through the protocol: stages, fencing, follow-ups
    edge      app, tasks, signals, prefork, local_cli: Celery and the command line

``celery -A workers.app``, ``python -m workers.local_cli`` and every ``fleetsync.*``
task name are an API and stay as they are.
"""
