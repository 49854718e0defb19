"""``fleetsync dev up|down|status|build``: the local fleet for demos, tests and development.

Registered with the CLI through the ``fleetsync.commands`` entry-point group, so
that ``scheduler/`` never imports this package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devtools import fleet as devfleet
from devtools import fleet_registry
from devtools import workloads as wl
from devtools.binaries import (BinaryError, describe, describe_tools, ensure_binaries, ensure_helm,
                               ensure_sops)
from devtools.gotools import TEST_TOOLS, ensure_registry_tools, ensure_tools


def add_parser(sub: argparse._SubParsersAction) -> None:
    dev = sub.add_parser("dev", help="local Redis and Kubernetes clusters")
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)

    up = dev_sub.add_parser("up", help="start Redis and N local clusters")
    up.add_argument("--clusters", type=int, default=None, help="how many (default 3)")
    up.add_argument("--names", help="comma-separated cluster names (default dev-1..dev-N)")
    up.add_argument("--no-workloads", dest="workloads", action="store_false",
                    help="bare control planes (etcd, kube-apiserver): no controllers, "
                         "scheduler, kwok or Nodes")
    up.add_argument("--nodes", type=_count, default=wl.DEFAULT_NODES,
                    help=f"fake Nodes per cluster (default {wl.DEFAULT_NODES})")
    up.add_argument("--nodes-timeout", type=float, default=wl.NODES_READY_TIMEOUT,
                    help=f"seconds for the Nodes to be Ready (default {wl.NODES_READY_TIMEOUT:g})")
    up.add_argument("--registry", action="store_true",
                    help="also an OCI registry on loopback (TLS with the fleet's CA, basic auth)")
    _state_arg(up)
    up.set_defaults(func=cmd_up)

    down = dev_sub.add_parser("down", help="stop everything `dev up` started, remove its data")
    _state_arg(down)
    down.set_defaults(func=cmd_down)

    status = dev_sub.add_parser("status", help="what runs and what answers")
    _state_arg(status)
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status.set_defaults(func=cmd_status)

    build = dev_sub.add_parser("build", help="find or build etcd, kube-apiserver, "
                               "kube-controller-manager, kube-scheduler, kwok, sops, age-keygen, helm, "
                               "registry, crane and oras")
    build.add_argument("--no-workloads", dest="workloads", action="store_false",
                       help="only what a bare control plane needs (etcd, kube-apiserver)")
    build.add_argument("--no-sops", dest="sops", action="store_false",
                       help="not sops and age-keygen (SOPS-encrypted manifests and their tests)")
    build.add_argument("--no-helm", dest="helm", action="store_false",
                       help="not helm (chart applications and their tests)")
    build.add_argument("--no-registry", dest="registry", action="store_false",
                       help="not registry, crane and oras (OCI sources and their tests)")
    build.add_argument("--cosign", action="store_true",
                       help="also cosign (test-only: the OCI signature tests sign with it)")
    build.set_defaults(func=cmd_build)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _state_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=None,
                        help=f"where the fleet keeps its state (default {devfleet.default_state_dir()})")


def _names(args: argparse.Namespace) -> list[str]:
    if args.names:
        names = [n.strip() for n in args.names.split(",") if n.strip()]
        if args.clusters is not None and args.clusters != len(names):
            raise SystemExit(f"error: --clusters {args.clusters} but {len(names)} --names given")
        return names
    return [f"dev-{i}" for i in range(1, (args.clusters or 3) + 1)]


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or devfleet.default_state_dir()
    try:
        state = devfleet.up(_names(args), state_dir, progress=_say, workloads=args.workloads,
                            nodes=args.nodes, nodes_timeout=args.nodes_timeout)
    except (devfleet.DevFleetError, BinaryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.registry and not _start_registry(state):
        return 1
    print(f"redis: {state.redis_url}")
    for name, path in state.clusters.items():
        nodes = f"  nodes {len(state.nodes[name])}" if state.nodes.get(name) else ""
        print(f"{name}: {state.servers[name]}  kubeconfig {path}{nodes}")
    if state.registry:
        reg = state.registry
        print(f"registry: oci://{reg['host']}  user {reg['user']}, password in "
              f"{reg['password_file']}, CA {reg['ca_file']}; plain HTTP oci://{reg['plain']}")
    return 0


def _start_registry(state: devfleet.FleetState) -> bool:
    """The registry beside a fleet that is up; on failure the whole fleet is stopped."""
    try:
        state.registry = fleet_registry.start(state, _say)
    except (devfleet.DevFleetError, BinaryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        devfleet.down(state.state_dir, progress=_say)
        devfleet.stop_processes(state.processes, grace=5)
        return False
    (state.state_dir / "dev.json").write_text(json.dumps(state.to_json(), indent=2) + "\n")
    return True


def cmd_down(args: argparse.Namespace) -> int:
    try:
        devfleet.down(args.state_dir or devfleet.default_state_dir(), progress=_say)
    except devfleet.DevFleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or devfleet.default_state_dir()
    rows = devfleet.status(state_dir)
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"No local fleet in {state_dir}")
    for row in rows if args.output == "table" else []:
        if "pid" in row:
            print(f"{row['name']:<28} pid {row['pid']:<8} {'running' if row['alive'] else 'STOPPED'}")
        else:
            nodes = f"  nodes {row['nodes_ready']} Ready" if "nodes_ready" in row else ""
            print(f"{row['name']:<28} {row['server']:<26} "
                  f"{'ready' if row['ready'] else 'NOT READY'}{nodes}")
    healthy = all(r.get("alive", True) and r.get("ready", True) for r in rows)
    return 0 if rows and healthy else 1


def cmd_build(args: argparse.Namespace) -> int:
    try:
        found = ensure_binaries(_say, workloads=args.workloads)
        tools = ensure_sops(_say) if args.sops else {}
        if args.helm:
            tools = {**tools, **ensure_helm(_say)}
        if args.registry:
            tools = {**tools, **ensure_registry_tools(_say)}
        if args.cosign:
            tools = {**tools, **ensure_tools(TEST_TOOLS, _say)}
    except BinaryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(describe(found))
    if tools:
        print(describe_tools(tools))
    return 0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
