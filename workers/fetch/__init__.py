"""Getting content: Git sources (the git CLI, transport rules, signature checks) and
Helm chart repositories. Imports nothing of the workers above it but ``sealing``."""
