"""``fleetsync server``: Git webhooks, the JSON API and the fleet dashboard, in one process.

It stands on the scheduler side: it reads Redis (status, history, sources),
follows the fleet spec, and enqueues by task name (``fleetsync.fetch_source``
for a push, ``fleetsync.sync`` on request); it never imports worker code, Git
or the Kubernetes client. Starlette routes the requests and uvicorn serves
them (ASGI); the blocking Redis and broker calls run in Starlette's thread pool.

    config.py     settings, tokens by reference, the loopback rule
    access.py     who may call what (tokens, loopback Host names, same origin)
    hooks.py      signatures and push payloads (pure)
    webhooks.py   POST /hooks/<provider>/<source>
    fleetview.py  rows, matrix and per-revision roll-ups of the fleet (pure)
    api.py        /api/v1
    pages.py      the dashboard (templates/, static/)
    app.py        the routes, assembled
"""
