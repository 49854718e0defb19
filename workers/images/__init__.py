"""Image update automation: which tag of a registry repository a policy picks (``policy``,
pure), reading a repository's tags and the chosen tag's digest (``scan``), and setting
the choices in a Git source's manifests and pushing them (``setters``, ``gitpush``).
Stands on ``workers.fetch`` (the registry client, the git CLI) and nothing above it."""
