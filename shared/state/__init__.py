"""Redis state: keys, unit status and history, runs (the protocol's adapter), locks,
cluster back-off, heartbeats, rollout records and the connection itself. Nothing here
survives a Redis wipe by design: Git and the clusters hold the durable truth."""
