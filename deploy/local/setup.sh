#!/usr/bin/env bash
# Prepare this machine for fleetsync's demo and tests: system packages, a
# virtual environment with the project, and the Kubernetes binaries (built
# once from the Go module proxy and cached under ~/.cache/fleetsync). With
# --for-tests also what only the tests need: their system packages, and helm,
# sops and age-keygen.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '==> %s\n' "$*" >&2; }

for_tests=false
[ "${1:-}" = "--for-tests" ] && for_tests=true

need_pkgs=()
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v git >/dev/null || need_pkgs+=(git)
command -v openssl >/dev/null || need_pkgs+=(openssl)
"${PYTHON:-python3}" -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
# the tests check docker-compose.yml with `docker-compose config` (no engine needed)
$for_tests && ! command -v docker-compose >/dev/null && need_pkgs+=(docker-compose)
# the browser tests drive Debian's chromium with Playwright (it cannot download its own here)
$for_tests && ! command -v chromium >/dev/null && need_pkgs+=(chromium)
# the Git transport tests run a real sshd on loopback
$for_tests && [ ! -x /usr/sbin/sshd ] && need_pkgs+=(openssh-server)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    say "missing system packages: ${need_pkgs[*]} (install them, e.g. sudo apt-get install ${need_pkgs[*]})"
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import shared, workers, scheduler, pytest, importlinter' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  say "installing fleetsync and its test tools into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi

# The demo runs only the local clusters' binaries; the tests also render Helm charts, decrypt
# SOPS files, push to an OCI registry and sign with cosign, so `--for-tests` builds those too.
if $for_tests; then
  say "checking binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, helm, sops, age-keygen, registry, crane, oras, cosign)"
  .venv/bin/fleetsync dev build --cosign
else
  say "checking Kubernetes binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)"
  .venv/bin/fleetsync dev build --no-sops --no-helm --no-registry
fi
