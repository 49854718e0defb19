"""What both sides of fleetsync need, in three layers (checked by import-linter):

    celery_app, tasks_api   the Celery app and the task contract
    spec/ | state/          the fleet spec (model, loader, parts) | Redis state
    the pure kernels        protocol, rollout, semver, refnames, git_urls, yamlsafe,
                            errors, settings, logs, metrics
"""
