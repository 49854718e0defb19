"""Sub-commands of the fleetsync CLI, one module each."""
