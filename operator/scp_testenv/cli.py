"""``python -m scp_testenv``: run a local control plane, or print the binaries' paths.

    python -m scp_testenv up [--kubeconfig PATH] [--service-account NS/NAME]... [--user NAME]...
    python -m scp_testenv binaries [--json]

``up`` prints ``export KUBECONFIG=...`` (admin) on stdout and keeps the control plane running
until Ctrl-C or SIGTERM; extra identities' kubeconfig paths are printed as comments.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from scp_testenv.binaries import BinariesError, resolve_binaries
from scp_testenv.controlplane import ControlPlane, ControlPlaneError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scp_testenv", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start etcd + kube-apiserver and wait for Ctrl-C/SIGTERM")
    up.add_argument(
        "--kubeconfig",
        type=Path,
        help="also copy the admin kubeconfig here (it is removed again on exit)",
    )
    up.add_argument("--port", type=int, help="kube-apiserver port (default: a free one)")
    up.add_argument(
        "--service-account",
        action="append",
        default=[],
        metavar="NS/NAME",
        help="add a token identity that RBAC treats as this service account (repeatable)",
    )
    up.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME[:GROUP,...]",
        help="add a token identity with these groups (repeatable)",
    )
    up.add_argument("--keep-workdir", action="store_true", help="keep logs and data on exit")

    binaries = commands.add_parser("binaries", help="print the paths of the (built) binaries")
    binaries.add_argument("--json", action="store_true", help="print a JSON object")
    return parser


def _up(args: argparse.Namespace) -> int:
    cp = ControlPlane(apiserver_port=args.port, keep_workdir=args.keep_workdir)
    users: list[str] = []
    for spec in args.service_account:
        namespace, _, name = spec.partition("/")
        if not namespace or not name:
            raise SystemExit(f"--service-account expects NS/NAME, got {spec!r}")
        cp.add_service_account_token(namespace, name)
        users.append(f"system:serviceaccount:{namespace}:{name}")
    for spec in args.user:
        name, _, groups = spec.partition(":")
        cp.add_token(name, [g for g in groups.split(",") if g])
        users.append(name)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    copied: Path | None = None
    with cp:
        kubeconfig = cp.kubeconfig
        if args.kubeconfig:
            copied = args.kubeconfig.resolve()
            copied.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cp.kubeconfig, copied)
            copied.chmod(0o600)
            kubeconfig = copied
        print(f"# kube-apiserver {cp.server}, logs in {cp.workdir}", file=sys.stderr)
        for user in users:
            print(f"# {user}: KUBECONFIG={shlex.quote(str(cp.kubeconfig_for(user)))}")
        print(f"export KUBECONFIG={shlex.quote(str(kubeconfig))}", flush=True)
        try:
            while not stop.wait(1.0):
                if not cp.running:
                    print("scp_testenv: a control-plane process exited", file=sys.stderr)
                    return 1
        finally:
            if copied is not None:
                copied.unlink(missing_ok=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "binaries":
            paths = {name: str(path) for name, path in resolve_binaries().as_dict().items()}
            if args.json:
                print(json.dumps(paths, indent=2))
            else:
                for name, path in paths.items():
                    print(f"{name}={path}")
            return 0
        return _up(args)
    except (BinariesError, ControlPlaneError) as exc:
        print(f"scp_testenv: {exc}", file=sys.stderr)
        return 1
