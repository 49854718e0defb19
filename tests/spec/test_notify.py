"""The fleet spec's ``notifications`` section: routes read, every mistake named with its line."""

from __future__ import annotations

import textwrap

import pytest

from shared.errors import SpecError
from shared.spec.model import Notifications, Route
from shared.spec.load import load

BASE = """\
sources:
  - name: git
    url: https://git.example.com/org/gitops.git
    branch: main
clusters:
  - name: a
applications:
  - name: web
    source: git
    path: app
    clusters: {names: [a]}
  - name: api
    source: git
    path: api
    clusters: {names: [a]}
"""


def spec(tmp_path, notifications: str):
    path = tmp_path / "fleet.yaml"
    path.write_text(BASE + textwrap.dedent(notifications))
    return path


def problems(tmp_path, notifications: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        load(str(spec(tmp_path, notifications)))
    return err.value.problems


def test_no_section_means_no_routes(tmp_path):
    assert load(str(spec(tmp_path, ""))).notifications == Notifications()


def test_routes_of_every_provider(tmp_path):
    fleet = load(str(spec(tmp_path, """\
        notifications:
          settleTimeout: 5m
          debounce: 0
          routes:
            - name: chat
              provider: slack
              urlEnv: SLACK_URL
              applications: [web]
              maxPerMinute: 5
            - name: audit
              provider: webhook
              url: https://hooks.example.com/fleet
              tokenEnv: AUDIT_TOKEN
              events: [failure]
            - name: commits
              provider: github
              repository: org/gitops
              tokenEnv: GITHUB_TOKEN
              context: fleet
        """)))
    n = fleet.notifications
    assert (n.settle_timeout, n.debounce) == (300.0, 0.0)
    assert n.routes == (
        Route("chat", "slack", url_env="SLACK_URL", applications=("web",), max_per_minute=5),
        Route("audit", "webhook", url="https://hooks.example.com/fleet", token_env="AUDIT_TOKEN",
              events=("failure",)),
        Route("commits", "github", token_env="GITHUB_TOKEN", repository="org/gitops",
              context="fleet"))
    assert n.routes[0].covers("web") and not n.routes[0].covers("api")
    assert n.routes[1].covers("api")


def test_every_mistake_is_named_with_file_line_and_field(tmp_path):
    found = problems(tmp_path, """\
        notifications:
          debounce: soon
          routes:
            - name: chat
              provider: slack
              url: https://hooks.slack.com/services/T000/B000/XXXX
            - name: hook
              provider: webhook
              url: https://user:pw@example.com/x
              applications: [web, nope]
              events: [rollup, everything]
              maxPerMinute: 0
              token: abc
            - name: gh
              provider: github
              events: [failure]
            - name: chat
              provider: teams
              urlEnv: https://example.com
        """)
    f = str(tmp_path / "fleet.yaml")
    assert found == [
        f"{f}:17: notifications.debounce: invalid duration 'soon': use e.g. 30s, 5m, 1h, 1m30s, "
        "500ms or whole seconds",
        f"{f}:19: notifications.routes[0].urlEnv: is required for provider slack",
        f"{f}:21: notifications.routes[0].url: does not apply to provider slack",
        f"{f}:24: notifications.routes[1].url: must not carry credentials: name a token with "
        "tokenEnv, or the URL with urlEnv",
        f"{f}:25: notifications.routes[1].applications[1]: no application named 'nope'",
        f"{f}:26: notifications.routes[1].events[1]: must be one of rollup, failure, held, not 'everything'",
        f"{f}:27: notifications.routes[1].maxPerMinute: must be a whole number of messages of at "
        "least 1, not '0'",
        f"{f}:28: notifications.routes[1].token: inline secrets are not allowed: put the value in "
        "an environment variable and name it with tokenEnv",
        f"{f}:29: notifications.routes[2].repository: is required for provider github",
        f"{f}:29: notifications.routes[2].tokenEnv: is required for provider github",
        f"{f}:31: notifications.routes[2].events: a commit status reports roll-ups only: use "
        "events: [rollup]",
        f"{f}:33: notifications.routes[3].provider: must be one of slack, webhook, github, gitlab, not 'teams'",
        f"{f}:34: notifications.routes[3].urlEnv: must be the name of an environment variable "
        "(letters, digits and '_'), not its value",
    ]


def test_duplicate_route_names_and_a_webhook_without_url(tmp_path):
    found = problems(tmp_path, """\
        notifications:
          routes:
            - {name: a, provider: webhook}
            - {name: a, provider: webhook, url: "https://example.com/x?token=1"}
        """)
    assert [p.split(": ", 1)[1] for p in found] == [
        "notifications.routes[0]: give exactly one of url or urlEnv",
        "notifications.routes[1].url: must not carry a query string (where tokens hide): put "
        "the URL in urlEnv",
        "notifications.routes[1].name: duplicate route name 'a' (first at line 18)",
    ]
