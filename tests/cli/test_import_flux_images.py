"""`fleetsync import flux` with Flux's image automation: ImageRepository + ImagePolicy
become ``images:``, ImageUpdateAutomation its Git source's ``imageUpdates``; the result
validates with fleetsync's own loader and what has no counterpart is a note."""

from __future__ import annotations

from pathlib import Path

from shared.spec.images import TagFilter
from tests.cli.test_import import loaded, run, write

FLUX = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: flux-system, namespace: flux-system}
spec: {url: https://github.com/example/fleet-infra, ref: {branch: main}, interval: 1m}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system}
spec: {sourceRef: {kind: GitRepository, name: flux-system}, path: ./clusters/my-cluster,
       interval: 10m, prune: true}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {name: podinfo, namespace: flux-system}
spec: {image: ghcr.io/stefanprodan/podinfo, interval: 5m, secretRef: {name: ghcr-login}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {name: nginx, namespace: flux-system}
spec: {image: nginx, interval: 1h, exclusionList: ["^.*\\\\.sig$"]}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: podinfo, namespace: flux-system}
spec:
  imageRepositoryRef: {name: podinfo}
  policy: {semver: {range: 5.0.x}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: podinfo-main, namespace: flux-system}
spec:
  imageRepositoryRef: {name: podinfo}
  filterTags: {pattern: '^main-[a-fA-F0-9]+-(?P<ts>.*)', extract: '$ts'}
  policy: {numerical: {order: asc}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: nginx, namespace: flux-system}
spec: {imageRepositoryRef: {name: nginx}, policy: {alphabetical: {order: desc}}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageUpdateAutomation
metadata: {name: flux-system, namespace: flux-system}
spec:
  interval: 30m
  sourceRef: {kind: GitRepository, name: flux-system}
  git:
    checkout: {ref: {branch: main}}
    commit:
      author: {email: fluxcdbot@users.noreply.github.com, name: fluxcdbot}
      messageTemplate: '{{range .Updated.Images}}{{println .}}{{end}}'
      signingKey: {secretRef: {name: signing-key}}
    push: {branch: image-updates}
  update: {path: ./clusters/my-cluster, strategy: Setters}
"""


def test_image_automation_becomes_images_and_image_updates(tmp_path: Path) -> None:
    write(tmp_path / "flux.yaml", FLUX)
    out = tmp_path / "fleet.yaml"
    proc = run("flux", str(tmp_path / "flux.yaml"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    fleet = loaded(out)
    podinfo, main, nginx = fleet.images
    assert (podinfo.name, podinfo.namespace, podinfo.repository, podinfo.kind, podinfo.value,
            podinfo.interval) == ("podinfo", "flux-system", "ghcr.io/stefanprodan/podinfo",
                                  "semver", "5.0.x", 300.0)
    assert podinfo.named_by("flux-system:podinfo")
    assert (main.kind, main.value, main.filter) == (
        "numerical", "asc", TagFilter("^main-[a-fA-F0-9]+-(?P<ts>.*)", "$ts"))
    assert (nginx.repository, nginx.kind, nginx.value, nginx.interval) == (
        "docker.io/library/nginx", "alphabetical", "desc", 3600.0)
    updates = fleet.sources["flux-system"].image_updates
    assert (updates.path, updates.author_name, updates.author_email, updates.push_branch,
            updates.interval, updates.message_template) == (
        "clusters/my-cluster", "fluxcdbot", "fluxcdbot@users.noreply.github.com",
        "image-updates", 1800.0, "")
    assert "secretRef 'ghcr-login': set auth" in proc.stderr
    assert "spec.exclusionList has no counterpart" in proc.stderr
    assert "git.commit.messageTemplate is a Go template" in proc.stderr
    assert "git.commit.signingKey (Secret 'signing-key')" in proc.stderr


def test_a_policy_without_its_repository_is_skipped_by_name(tmp_path: Path) -> None:
    write(tmp_path / "flux.yaml", """\
        apiVersion: image.toolkit.fluxcd.io/v1beta2
        kind: ImagePolicy
        metadata: {name: lost, namespace: apps}
        spec: {imageRepositoryRef: {name: nowhere}, policy: {semver: {range: '^1'}}}
        ---
        apiVersion: image.toolkit.fluxcd.io/v1beta2
        kind: ImageUpdateAutomation
        metadata: {name: auto, namespace: apps}
        spec: {sourceRef: {kind: GitRepository, name: missing}, update: {path: ./}}
        """)
    proc = run("flux", str(tmp_path / "flux.yaml"))
    assert proc.returncode == 1
    assert "ImagePolicy lost: its ImageRepository 'nowhere' is not among the inputs" in proc.stderr
    assert "ImageUpdateAutomation auto: its sourceRef GitRepository 'missing' is not a Git " \
           "source among the inputs" in proc.stderr
