"""``fleetsync server``: Git webhooks, the JSON API and the fleet dashboard, in one process.

It stands on the scheduler side: it reads Redis (status, history, sources),
follows the fleet spec, and enqueues by task name (``fleetsync.fetch_source``
for a push, ``fleetsync.sync`` on request); it never imports worker code, Git
or the Kubernetes client. Starlette routes the requests and uvicorn serves
them (ASGI); the blocking Redis and broker calls run in Starlette's thread pool.

    config.py     settings, tokens by reference, the loopback rule
    tokens.py     the token file: names, scopes, applications
    access.py     who may call what (tokens and scopes, loopback Host names, same origin, CSRF)
    csrf.py       the dashboard's session cookie and CSRF token
    hooks.py      signatures and push payloads (pure)
    webhooks.py   POST /hooks/<provider>/<source>
    fleetview.py  rows, matrix and per-revision roll-ups of the fleet (pure)
    api.py        /api/v1
    holds_api.py  /api/v1 for rollouts and suspensions (scheduler/holds.py)
    windowband.py the dashboard's change windows per cluster (pure)
    pages.py      the dashboard (templates/, static/), with the buttons a token may use
    app.py        the routes, assembled
"""
