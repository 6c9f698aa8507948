"""``scp-emulator``: run the emulator from a shell, a Makefile or a test subprocess.

Once it listens it prints exactly one line to stdout, ``scp-emulator listening on URL``, and
flushes it, so a parent process can wait for that line and read the URL (port 0 works). Logs go
to stderr. SIGINT and SIGTERM stop it cleanly with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .config import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Credential, EmulatorConfig
from .server import EmulatorServer
from .servers import ServerSpec

logger = logging.getLogger("scp_emulator")

ENV_ACCESS_KEY = "SCP_EMULATOR_ACCESS_KEY"
ENV_SECRET_KEY = "SCP_EMULATOR_SECRET_KEY"


class UsageError(Exception):
    """A bad option or seed file: reported as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The command line parser."""
    parser = argparse.ArgumentParser(
        prog="scp-emulator",
        description="Emulate the Samsung Cloud Platform virtualserver API on a local port.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8484, help="port to bind, 0 for any (default: %(default)s)"
    )
    parser.add_argument(
        "--access-key", help=f"access key to accept (env {ENV_ACCESS_KEY}; default: a fake one)"
    )
    parser.add_argument("--secret-key", help=f"its secret key (env {ENV_SECRET_KEY})")
    parser.add_argument(
        "--account-id", help="account id the key is bound to and seeded servers belong to"
    )
    parser.add_argument(
        "--delete-delay",
        type=float,
        default=1.0,
        help="seconds a deleted server stays DELETING (default: %(default)s)",
    )
    parser.add_argument(
        "--timestamp-window",
        type=float,
        default=300.0,
        help="accepted clock skew of Scp-Timestamp in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--reject-expired-versions",
        action="store_true",
        help="answer 400 to API versions whose not_before date has come",
    )
    parser.add_argument("--public-url", help="base URL clients use when behind a proxy")
    parser.add_argument(
        "--seed-file", type=Path, help="JSON file with servers to create (a list of objects)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="create N servers with random ids"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level (default: %(default)s)",
    )
    return parser


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> EmulatorConfig:
    """Turn parsed options (and the environment) into a validated config."""
    access_key = args.access_key or environ.get(ENV_ACCESS_KEY)
    secret_key = args.secret_key or environ.get(ENV_SECRET_KEY)
    if bool(access_key) != bool(secret_key):
        raise UsageError("give both an access key and a secret key, or neither")
    if args.seed < 0:
        raise UsageError("--seed must not be negative")
    servers = _read_seed_file(args.seed_file) if args.seed_file else []
    servers += [ServerSpec(name=f"emulated-{index:03d}") for index in range(1, args.seed + 1)]
    if not access_key or not secret_key:
        logger.warning(
            "no credentials given: accepting the fake default pair access key %s / secret key %s",
            DEFAULT_ACCESS_KEY,
            DEFAULT_SECRET_KEY,
        )
        access_key, secret_key = DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY
    fields: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "credentials": [
            Credential(access_key=access_key, secret_key=secret_key, account_id=args.account_id)
        ],
        "delete_delay": args.delete_delay,
        "timestamp_window": args.timestamp_window,
        "reject_expired_versions": args.reject_expired_versions,
        "public_url": args.public_url,
        "servers": servers,
    }
    try:
        return EmulatorConfig.model_validate(fields)
    except ValidationError as error:
        raise UsageError(_first_error(error)) from None


def _read_seed_file(path: Path) -> list[ServerSpec]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read seed file {path}: {error}") from None
    if isinstance(data, dict) and "servers" in data:
        data = data["servers"]
    if not isinstance(data, list):
        raise UsageError(f"seed file {path} must hold a JSON list of servers")
    try:
        return [ServerSpec.model_validate(item) for item in data]
    except ValidationError as error:
        raise UsageError(f"seed file {path}: {_first_error(error)}") from None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"{location}: {first['msg']}" if location else str(first["msg"])


async def serve(config: EmulatorConfig) -> None:
    """Run until SIGINT or SIGTERM; announce the URL on stdout once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with EmulatorServer(config) as emulator:
        for server in emulator.state.list_servers():
            logger.info("seeded server %s (%s)", server.id, server.name)
        print(f"scp-emulator listening on {emulator.url}", flush=True)
        await stop.wait()
        logger.info("scp-emulator stopping")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scp-emulator`` and ``python -m scp_emulator``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args, os.environ)
        asyncio.run(serve(config))
    except UsageError as error:
        print(f"scp-emulator: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"scp-emulator: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0
