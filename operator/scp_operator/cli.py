"""``scp-operator``: run the operator, check a setup, read one server, print the version.

Every failure is one line on stderr and a non-zero exit code — never a traceback, never a secret.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from scp_operator import __version__
from scp_operator import runtime as runtime_mod
from scp_operator import settings as settings_mod
from scp_operator.credentials import CredentialsUnavailable
from scp_operator.model import UUID_PATTERN
from scp_operator.scp import versions
from scp_operator.scp.client import ScpClient
from scp_operator.scp.outcomes import Verdict

EXIT_FAILURE = 1
EXIT_SETTINGS = 2

NAMESPACE_FLAGS = ("-n", "--namespace", "-A", "--all-namespaces")


def _fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"scp-operator: {message}", err=True)
    sys.exit(code)


def _settings() -> settings_mod.Settings:
    try:
        return settings_mod.load()
    except settings_mod.SettingsError as exc:
        _fail(f"invalid settings: {exc}", EXIT_SETTINGS)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="scp-operator")
def cli() -> None:
    """Delete Samsung Cloud Platform virtual servers when their VirtualServer resources go.

    Configuration comes from SCP_* and SCP_OPERATOR_* environment variables (see the README).
    """


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("kopf_args", nargs=-1, type=click.UNPROCESSED)
def run(kopf_args: Sequence[str]) -> None:
    """Run the operator. Extra arguments go to ``kopf run`` (e.g. --namespace, --verbose,
    --liveness=http://0.0.0.0:8080/healthz); all namespaces by default."""
    if "-h" in kopf_args or "--help" in kopf_args:
        click.echo(run.get_help(click.get_current_context()))
        click.echo("\nKopf's own options (passed through):")
    else:
        _settings()  # fail fast, before Kopf starts, naming the variable
    import kopf.cli

    from scp_operator import scope

    scope.set_watched(scope.from_kopf_args(kopf_args))
    # Command-line-only Kopf flags (no settings.* equivalent): the module to load and, unless a
    # namespace is named, all namespaces. Every other Kopf option is set in the startup hook;
    # its docstring lists these flags too (scp_operator/handlers/startup.py, configure).
    args = ["run", "--module", "scp_operator.handlers", *kopf_args]
    if not any(a.split("=")[0] in NAMESPACE_FLAGS for a in kopf_args):
        args.append("--all-namespaces")
    kopf.cli.main(args=args, prog_name="scp-operator", standalone_mode=True)


@cli.command()
@click.option(
    "--account",
    "account",
    default=None,
    metavar="NAME",
    help="Check the ScpAccount NAME (its Secret, endpoint and keys, read through the current "
    "kubeconfig) instead of the operator's own SCP_* account.",
)
def check(account: str | None) -> None:
    """Prove settings, credentials, endpoint, API version and clock with one signed read."""
    loaded = _settings()
    if account is None:
        click.echo(
            f"ok    settings: endpoint {loaded.scp.service_url()}, API {loaded.scp.api_version}"
        )
    failures = asyncio.run(_check(loaded, account))
    if failures:
        _fail(f"{failures} check(s) failed")
    click.echo("all checks passed")


async def _check(loaded: settings_mod.Settings, account: str | None = None) -> int:
    runtime = runtime_mod.build(loaded)
    try:
        if account is None:
            return await _prove(runtime.client)
        client = await _account_client(runtime, account)
        return 1 if client is None else await _prove(client)
    finally:
        await runtime.aclose()


async def _account_client(runtime: runtime_mod.Runtime, name: str) -> ScpClient | None:
    """The ScpAccount's client, printing what was found on the way (None: a check failed)."""
    from scp_operator import accounts
    from scp_operator.directory import Refusal
    from scp_operator.kube import KubeReadError
    from scp_operator.kube_accounts import SecretProblem

    reader = runtime.account_reader
    try:
        body = await reader.account(name)
    except KubeReadError as exc:
        click.echo(f"FAIL  account: cannot read ScpAccount {name}: {exc}")
        return None
    except Exception as exc:  # no kubeconfig, unreachable API server
        click.echo(f"FAIL  account: cannot reach the Kubernetes API: {type(exc).__name__}")
        return None
    if body is None:
        click.echo(f"FAIL  account: ScpAccount {name} does not exist")
        return None
    try:
        spec = accounts.parse(body.get("spec") or {})
        where = accounts.service_url(spec, None)
    except (accounts.AccountInvalid, ValueError) as exc:
        click.echo(f"FAIL  account: ScpAccount {name} cannot be used: {exc}")
        return None
    version = spec.api_version or runtime.settings.scp.api_version
    click.echo(
        f"ok    account: {name}, endpoint {where}, API {version}, "
        f"account id {spec.account_id or '(not set)'}"
    )
    ref = spec.credentials_secret_ref
    try:
        await reader.secret_keys(ref.namespace, ref.name, ref.access_key_key, ref.secret_key_key)
    except (SecretProblem, KubeReadError) as exc:
        click.echo(f"FAIL  credentials: {exc}")
        return None
    target = await runtime.accounts.client_for(name, spec)
    if isinstance(target, Refusal):
        click.echo(f"FAIL  credentials: {target.message}")
        return None
    return target.client


async def _prove(client: ScpClient) -> int:
    failures = 0
    try:
        creds = client.credentials.get()
        click.echo(f"ok    credentials: from {creds.source}")
    except CredentialsUnavailable as exc:
        click.echo(f"FAIL  credentials: {exc}")
        return 1
    try:
        table = await client.list_versions()
        click.echo(f"ok    endpoint: answers with versions {', '.join(sorted(table))}")
    except ValueError as exc:
        click.echo(f"FAIL  endpoint: {exc}")
        failures += 1
        table = dict(versions.BUILTIN)
    warning = versions.support_warning(client.api_version, table, _today())
    click.echo(
        f"WARN  api version: {warning}"
        if warning
        else f"ok    api version: {client.api_version} is supported"
    )
    outcome = await client.list_servers_probe()
    if outcome.kind is Verdict.FOUND:
        click.echo("ok    signed read: credentials accepted, clock within SCP's window")
    else:
        hint = {
            Verdict.UNAUTHORIZED: "wrong keys, or the clock is skewed",
            Verdict.FORBIDDEN: "the key lacks IAM permission for virtual servers",
        }.get(outcome.kind, "see the answer")
        click.echo(f"FAIL  signed read: {outcome.describe()} ({hint})")
        failures += 1
    return failures


def _today() -> Any:
    import datetime

    return datetime.datetime.now(datetime.UTC).date()


@cli.group()
def server() -> None:
    """Read servers from SCP."""


@server.command("get")
@click.argument("server_id")
@click.option("--region", default=None, help="Region of the server (default: SCP_REGION).")
def server_get(server_id: str, region: str | None) -> None:
    """Print one server as JSON (one signed GET)."""
    if not re.match(UUID_PATTERN, server_id):
        _fail(f"server id {server_id!r} is not a UUID")
    loaded = _settings()
    outcome = asyncio.run(_get(loaded, server_id, region))
    if outcome.kind is not Verdict.FOUND:
        _fail(f"cannot read server {server_id}: {outcome.describe()}")
    click.echo(json.dumps(outcome.body, indent=2, sort_keys=True))


async def _get(loaded: settings_mod.Settings, server_id: str, region: str | None) -> Any:
    runtime = runtime_mod.build(loaded)
    try:
        return await runtime.client.get_server(server_id, region)
    finally:
        await runtime.aclose()


@cli.command("uninstall-check")
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    help="Namespace to look in (repeatable); all namespaces when omitted.",
)
def uninstall_check(namespaces: Sequence[str]) -> None:
    """Refuse (exit 1) while VirtualServers exist: uninstalling the operator would strand them.

    Used by the Helm chart's pre-delete hook. Needs only Kubernetes access (in-cluster or
    kubeconfig), no SCP settings.
    """
    from scp_operator.kube import list_virtualservers

    try:
        # The same async client as the operator (asyncio.run: one loop, the pool closed after):
        # one Kubernetes client library in the package, so one configuration and error path.
        found = asyncio.run(list_virtualservers(namespaces))
    except Exception as exc:  # any API failure: cannot prove it is safe, so refuse
        _fail(f"cannot list VirtualServers, so refusing to call the uninstall safe: {exc}")
    if not found:
        click.echo("no VirtualServers left: safe to uninstall")
        return
    shown = ", ".join(found[:20]) + (f" and {len(found) - 20} more" if len(found) > 20 else "")
    _fail(
        f"{len(found)} VirtualServer(s) still exist ({shown}); without the operator their "
        f"finalizer is never released and their servers are never deleted. Delete them and wait "
        f"until they are gone, or set spec.deletionPolicy: Orphan on those whose servers you keep; "
        f"`helm uninstall --no-hooks` skips this check."
    )


@cli.command()
def version() -> None:
    """Print the operator's version and the SCP API versions it speaks."""
    import kopf

    click.echo(f"scp-operator {__version__}")
    click.echo(f"kopf {getattr(kopf, '__version__', 'unknown')}")
    click.echo(
        f"SCP virtualserver API: {', '.join(versions.BUILTIN)} (default {versions.DEFAULT_VERSION})"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="scp-operator")
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # the last line of defence: one line, no traceback
        _fail(f"{type(exc).__name__}: {exc}")
