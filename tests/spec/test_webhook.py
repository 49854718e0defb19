"""The fleet spec's ``webhook: {secretEnv: NAME}`` on a source: read, and refused with
file, line and field when it holds a secret or no variable name."""

from __future__ import annotations

from pathlib import Path

from shared.spec.model import Webhook
from shared.spec.load import load, validate_file

HEAD = """sources:
  - name: platform
    url: https://git.example.com/org/gitops.git
    branch: main
"""


def _spec(tmp_path: Path, webhook: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(HEAD + f"    webhook: {webhook}\nclusters: []\n")
    return path


def test_webhook_secret_env_is_read(tmp_path: Path) -> None:
    fleet = load(str(_spec(tmp_path, "{secretEnv: PLATFORM_WEBHOOK_SECRET}")))
    assert fleet.sources["platform"].webhook == Webhook("PLATFORM_WEBHOOK_SECRET")


def test_no_webhook_by_default(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(HEAD + "clusters: []\n")
    assert load(str(path)).sources["platform"].webhook is None


def test_inline_secret_is_refused_with_its_line(tmp_path: Path) -> None:
    path = _spec(tmp_path, "{secret: hunter2}")
    _, problems, _ = validate_file(str(path))
    assert f"{path}:5: sources[0].webhook.secret: inline secrets are not allowed" in problems[0]
    assert any("sources[0].webhook.secretEnv: is required" in p for p in problems)
    assert not any("hunter2" in p for p in problems)


def test_secret_env_must_be_a_variable_name(tmp_path: Path) -> None:
    path = _spec(tmp_path, "{secretEnv: 'not a name'}")
    _, problems, _ = validate_file(str(path))
    assert problems == [f"{path}:5: sources[0].webhook.secretEnv: must be the name of an "
                        "environment variable (letters, digits and '_'), not its value"]


def test_webhook_must_be_a_mapping(tmp_path: Path) -> None:
    _, problems, _ = validate_file(str(_spec(tmp_path, "PLATFORM_WEBHOOK_SECRET")))
    assert len(problems) == 1 and "sources[0].webhook: must be a mapping" in problems[0]
