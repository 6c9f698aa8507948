"""The drain's baseline: a plain Kopf operator doing the same DELETE, with none of the guards.

Issue 10 compares the operator with "a plain Kopf operator of about 60 lines doing the same
DELETE, without any of the safety guards". This is that operator, so the comparison is made in
the same run, on the same machine, against the same API server and emulator: Kopf's default
finalizer, one signed ``DELETE /v1/servers/{id}`` per deleted object, release on 202/404, retry
on anything else. No account, CRD, sharer, protection or budget check, no status, no events.

Run by the benchmark as ``kopf run --standalone --namespace=NS tools/bench/plain_operator.py``
(``tools.bench.env.PlainOperator``). It signs with the operator's own pure signer and URL
builder (``scp_operator.scp``), so both operators send byte-identical requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import httpx
import kopf

from scp_operator.constants import GROUP, PLURAL, VERSION
from scp_operator.scp import endpoints, signing, versions

READY_LINE = "plain operator ready"


@kopf.on.startup()
async def start(memo: kopf.Memo, **_: Any) -> None:
    """One pooled client; at most C requests in flight, like the operator's limiter."""
    concurrency = int(os.environ.get("SCP_BENCH_CONCURRENCY", "32"))
    memo.base = endpoints.normalise_base(os.environ["SCP_ENDPOINT"])
    memo.credentials = (os.environ["SCP_ACCESS_KEY"], os.environ["SCP_SECRET_KEY"])
    memo.slots = asyncio.Semaphore(concurrency)
    memo.http = httpx.AsyncClient(
        timeout=30.0, limits=httpx.Limits(max_connections=concurrency), follow_redirects=False
    )
    # httpx logs one INFO line per request; the operator silences it too, so neither pays for it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger(__name__).info(READY_LINE)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await memo.http.aclose()


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_server(spec: kopf.Spec, memo: kopf.Memo, **_: Any) -> None:
    """DELETE the server; returning lets Kopf remove its finalizer, raising retries."""
    url = endpoints.build_url(memo.base, "v1", "servers", str(spec["serverId"]).lower())
    access_key, secret_key = memo.credentials
    async with memo.slots:
        headers = signing.signed_headers(
            method="DELETE",
            url=url,
            access_key=access_key,
            secret_key=secret_key,
            api_version=versions.DEFAULT_VERSION,
            language="en-US",
        )
        response = await memo.http.delete(url, headers=headers)
    if response.status_code in (202, 404):
        return
    if response.status_code == 409:
        raise kopf.TemporaryError("SCP refused the deletion (409)", delay=5)
    raise kopf.TemporaryError(f"SCP answered {response.status_code}", delay=5)
