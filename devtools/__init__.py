"""Developer tools: the local fleet, Kubernetes binary builds, the demo and the tutorial.

Kept apart from ``scheduler/`` (beat, the client, the CLI) so that what runs in
production carries none of it. Imports ``shared/`` only; the scheduler and the
workers are started as processes (``python -m scheduler.cli ...``), never
imported. ``fleetsync dev`` and ``fleetsync demo`` reach the CLI through the
``fleetsync.commands`` entry-point group (see ``cli_dev`` and ``cli_demo``).
"""
