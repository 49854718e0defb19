"""Notifications: what to say (``decide``: pure transitions and roll-ups), the loop
that watches unit status (``loop``), and delivery to routes (``send``)."""
