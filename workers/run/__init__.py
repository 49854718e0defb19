"""One run of a sync unit through the protocol: the stages (fetch, render, apply),
fencing by lease, the one health-to-phase decision (``health``), follow-ups,
removal, rollouts and the cluster pass (``sweep``). ``runner`` drives a run."""
