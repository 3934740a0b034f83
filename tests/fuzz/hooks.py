"""Schemathesis hooks for tenantry: a cross-tenant replay check.

Loaded by tests/fuzz/run.sh through SCHEMATHESIS_HOOKS. Every note that tenant
A creates during fuzzing (POST /v1/notes -> 201) is replayed as tenant B:
GET, PATCH and DELETE /v1/notes/{id} with B's Host and token must each be
404, and A must still read its note (otherwise B's 404 would prove nothing).

Environment:
  TENANT_A_HOST, TENANT_A_TOKEN  the identity schemathesis runs as (same as its -H headers)
  TENANT_B_HOST, TENANT_B_TOKEN  the other tenant, used for the replays
  TENANT_REPLAY_LOG              a file that gets one line per replayed note
"""
import os
import threading
from urllib.parse import urlsplit

import requests

import schemathesis

A_HOST = os.environ["TENANT_A_HOST"]
A_TOKEN = os.environ["TENANT_A_TOKEN"]
B_HOST = os.environ["TENANT_B_HOST"]
B_TOKEN = os.environ["TENANT_B_TOKEN"]

_local = threading.local()  # checks may run in several worker threads (-w N); one Session per thread


def _session() -> requests.Session:
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def _base_url(response) -> str:
    parts = urlsplit(response.request.url)  # the real socket address, e.g. http://127.0.0.1:8765
    return f"{parts.scheme}://{parts.netloc}"


@schemathesis.check
def tenant_isolation(ctx, response, case):
    """A note created by tenant A must be invisible (404) to tenant B for GET/PATCH/DELETE."""
    if case.method.upper() != "POST" or case.operation.path != "/v1/notes":
        return None
    if response.status_code != 201:
        return None
    sent_host = (response.request.headers.get("Host") or "").split(":")[0].lower()
    if sent_host != A_HOST.lower():
        return None  # only probe notes created under tenant A
    try:
        body = response.json()
    except Exception:
        return None
    if not isinstance(body, dict) or "id" not in body:
        return None
    note_id = str(body["id"])
    url = f"{_base_url(response)}/v1/notes/{note_id}"
    verify = response.verify
    headers_a = {"Host": A_HOST, "Authorization": f"Bearer {A_TOKEN}"}
    headers_b = {"Host": B_HOST, "Authorization": f"Bearer {B_TOKEN}"}

    # Precondition: the note really exists for its owner, otherwise a 404 for B proves nothing.
    owner = _session().get(url, headers=headers_a, timeout=10, verify=verify)
    if owner.status_code != 200:
        raise AssertionError(f"Owner tenant {A_HOST} cannot read its own note {note_id}: GET -> {owner.status_code}")

    problems = []
    probes = [
        ("GET", None),
        ("PATCH", {"content": "x"}),
        ("DELETE", None),
    ]
    for method, payload in probes:
        r = _session().request(method, url, headers=headers_b, json=payload, timeout=10, verify=verify)
        if r.status_code != 404:
            problems.append(f"{method} /v1/notes/{note_id} as {B_HOST} -> {r.status_code} {r.text[:200]!r}")
    # B's PATCH and DELETE must have changed nothing: A still reads its note as it was.
    after = _session().get(url, headers=headers_a, timeout=10, verify=verify)
    if after.status_code != 200 or after.json().get("content") != owner.json().get("content"):
        problems.append(f"after {B_HOST}'s attempts, {A_HOST} reads {after.status_code} {after.text[:200]!r}")
    # Evidence that the replays really ran (run.sh counts these lines).
    with open(os.environ["TENANT_REPLAY_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{note_id}\n")
    if problems:
        raise AssertionError(
            f"Cross-tenant access: note created by {A_HOST} is reachable by {B_HOST} (expected 404 each):\n  "
            + "\n  ".join(problems)
        )
    return None
