"""The local sandbox: a real control plane, the SCP emulator, the operator, sample deletions.

    make sandbox                      # scripted walk-through, then everything stops
    make sandbox SANDBOX_ARGS=--keep  # leave it running and print the kubectl lines to try

Everything runs on 127.0.0.1 and lives under ``.sandbox/`` (logs, kubeconfig).
``scp_testenv`` (the control plane) is repository tooling, not part of the wheel: ``operator/``
is put on ``sys.path`` when it is not importable already.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("scp_testenv") is None:
    sys.path.append(str(REPO / "operator"))

from scp_emulator.config import EmulatorConfig  # noqa: E402
from scp_emulator.testing import ThreadedEmulator  # noqa: E402
from scp_operator import constants  # noqa: E402
from scp_testenv import ControlPlane, WaitTimeout, free_port, wait_for  # noqa: E402
from scp_testenv.binaries import resolve_binaries  # noqa: E402
from scp_testenv.operator_process import OperatorProcess, OperatorProcessError  # noqa: E402

WORK = REPO / ".sandbox"
NS = "sandbox"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(cp: ControlPlane, *args: str) -> str:
    print(f"$ kubectl {' '.join(args)}", flush=True)
    out = cp.kubectl(*args, check=False)
    text = (out.stdout + out.stderr).rstrip()
    print(text, flush=True)
    return text


def exists(cp: ControlPlane, name: str) -> bool:
    return cp.kubectl("get", "scpvs", name, "-n", NS, check=False).returncode == 0


def reason(cp: ControlPlane, name: str) -> str:
    out = cp.kubectl(
        "get",
        "scpvs",
        name,
        "-n",
        NS,
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Deleting")].reason}',
        check=False,
    )
    return out.stdout.strip()


def walkthrough(cp: ControlPlane, emu: ThreadedEmulator) -> None:
    say("Sample VirtualServers (examples/virtualservers.yaml), observed in SCP")
    wait_for(
        lambda: all(
            cp.kubectl(
                "get", "scpvs", n, "-n", NS, "-o", "jsonpath={.status.server.state}", check=False
            ).stdout
            for n in ("web-1", "db-1", "billing-1")
        ),
        60,
        "observation",
    )
    show(cp, "get", "scpvs", "-n", NS)

    say("1. kubectl delete web-1: the operator calls SCP's DELETE, then lets the object go")
    show(cp, "delete", "scpvs", "web-1", "-n", NS, "--wait=true", "--timeout=60s")
    calls = emu.requests(method="DELETE", path_contains="2a9be312")
    print(f"SCP emulator saw: {[(c['method'], c['path'], c['status']) for c in calls]}")

    say("2. kubectl delete db-1: its server is locked, SCP answers 409, the object waits")
    show(cp, "delete", "scpvs", "db-1", "-n", NS, "--wait=false")
    # SCP's 409 does not say why; the operator reads the server and names the lock
    wait_for(lambda: reason(cp, "db-1") == "ServerLocked", 60, "the ServerLocked condition")
    show(cp, "get", "scpvs", "db-1", "-n", NS, "-o", "wide")
    show(cp, "get", "events", "-n", NS, "--field-selector=involvedObject.name=db-1")
    say("   ... unlock the server in SCP (the emulator's admin API); the retry succeeds")
    emu.patch("7c1e4f0a-9b2d-4e8f-a6c3-5d4e3f2a1b0c", locked=False)
    wait_for(lambda: not exists(cp, "db-1"), 120, "db-1 to go")
    print("db-1 is gone; its server was deleted in SCP.")

    say("3. kubectl delete billing-1: deletion-protection holds it, SCP is not called")
    show(cp, "delete", "scpvs", "billing-1", "-n", NS, "--wait=false")
    wait_for(lambda: reason(cp, "billing-1") == "DeletionProtected", 60, "DeletionProtected")
    show(cp, "get", "scpvs", "billing-1", "-n", NS)
    say("   ... the owner decides to keep the server: deletionPolicy Orphan lets the object go")
    show(
        cp,
        "patch",
        "scpvs",
        "billing-1",
        "-n",
        NS,
        "--type=merge",
        "-p",
        '{"spec":{"deletionPolicy":"Orphan"}}',
    )
    wait_for(lambda: not exists(cp, "billing-1"), 60, "billing-1 to go")
    kept = emu.server("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")
    print(
        f"billing-1 is gone from Kubernetes; its server is kept in SCP: state "
        f"{(kept or {}).get('state')}"
    )

    say("Done: every sample VirtualServer is gone, and SCP saw exactly what it should:")
    for call in emu.requests(method="DELETE"):
        print(f"  {call['method']} {call['path']} -> {call['status']}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="skip the walk-through; keep everything running until Ctrl-C",
    )
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    say("Control plane: kube-apiserver + etcd (built from source on first use, then cached)")
    binaries = resolve_binaries()
    seed = json.loads((REPO / "examples" / "emulator-servers.json").read_text())
    with (
        ControlPlane(binaries) as cp,
        ThreadedEmulator(EmulatorConfig(delete_delay=2.0, servers=seed)) as emu,
    ):
        version = cp.get_json("/version")["gitVersion"]
        print(f"kube-apiserver {version} at {cp.server}; SCP emulator at {emu.url}")
        cp.kubectl("apply", "-f", str(REPO / "crds"))
        cp.kubectl(
            "wait", "--for=condition=Established", f"crd/{constants.CRD_NAME}", "--timeout=60s"
        )
        cp.kubectl("create", "namespace", NS)
        kubeconfig = WORK / "kubeconfig"
        kubeconfig.write_bytes(cp.kubeconfig.read_bytes())
        say("Operator: scp-operator run, pointed at the emulator")
        metrics_port = free_port()
        op = OperatorProcess(
            kubeconfig=cp.kubeconfig,
            log_path=WORK / "operator.log",
            namespaces=[NS],
            env={
                **emu.scp_env(),
                "SCP_OPERATOR_BACKOFF_BASE": "2",
                "SCP_OPERATOR_BACKOFF_CAP": "10",
                "SCP_OPERATOR_HOLD_RECHECK_INTERVAL": "5",
                "SCP_OPERATOR_METRICS_PORT": str(metrics_port),
            },
        )
        op.start()
        print(
            f"operator log: {op.log_path.relative_to(REPO)}; "
            f"metrics: http://127.0.0.1:{metrics_port}/metrics"
        )
        cp.kubectl("apply", "-n", NS, "-f", str(REPO / "examples" / "virtualservers.yaml"))
        try:
            if args.keep:
                say("Running. In another shell:")
                print(f"  export KUBECONFIG={kubeconfig}")
                print(f"  {binaries.kubectl} get scpvs -n {NS}")
                print(f"  {binaries.kubectl} delete scpvs web-1 -n {NS}")
                print(f"  curl {emu.url}/_emulator/requests   # what SCP saw")
                print("Ctrl-C stops everything.")
                signal.signal(signal.SIGTERM, signal.default_int_handler)
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
            else:
                walkthrough(cp, emu)
        finally:
            op.stop()
    say("Stopped: control plane, emulator and operator are down.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (subprocess.CalledProcessError, OperatorProcessError, WaitTimeout) as exc:
        sys.exit(f"sandbox: {exc}")
