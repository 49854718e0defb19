"""The fleet spec: the model (``model``), the loader with file:line errors (``load``,
``load_fleet``), its parts (sources, Helm, rollout, notifications) and the watcher."""
