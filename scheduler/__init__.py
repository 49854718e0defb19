"""Beat schedule from the fleet spec, the client API for scripts, and the CLI.

Never imports ``workers``: work is enqueued by task name.
"""
