"""The whole OpenAPI description, fuzzed by schemathesis against the API as deployed (gunicorn +
gevent), once with a user's token and once with an admin's: no answer may be a 5xx, and every
answer must match the schema the spec promises for it (the error shape included).

Two operations are left out, on purpose:
- `POST /api/auth/logout` revokes the very token the run uses, so every later case would be a 401;
- `GET /api/queue/{event_id}/stream` is Server-Sent Events: a response that does not end, which a
  request/response fuzzer cannot read to the end.

Bounded: MAX_EXAMPLES cases per operation, 4 workers; about a minute on two cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES") or 12)  # more, and another FUZZ_SEED, to explore
SEED = os.environ.get("FUZZ_SEED") or "20261128"


@pytest.mark.parametrize("who", ["user", "admin"])
def test_no_5xx_and_no_schema_violation_anywhere_in_the_spec(live_api, make_user, make_event, who, tmp_path):
    make_event(sections=[{"name": "Floor", "capacity": 50}])  # something to find behind the ids
    token = make_user(admin=who == "admin")["token"]
    report = tmp_path / "report.json"
    st = Path(sys.executable).parent / "st"
    for _attempt in range(2):
        out = subprocess.run(
            [str(st), "run", f"{live_api.url}/api/openapi.json", "--url", live_api.url,
             "-H", f"Authorization: Bearer {token}",
             "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
             "--max-examples", str(MAX_EXAMPLES), "--workers", "4", "--seed", SEED,
             # the coverage phase trips a CPython 3.11 parser bug inside Hypothesis ("AST constructor
             # recursion depth mismatch") while describing its own filters: a tool error, not ours
             "--phases", "examples,fuzzing,stateful",
             "--exclude-path", "/api/auth/logout", "--exclude-path-regex", "/stream$",
             "--request-timeout", "20", "--report", "json", "--report-json-path", str(report), "--no-color"],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
        # the same parser bug now and then in the fuzzing phase too (one CI run in several): that
        # run tested nothing of the operation it broke on, so it is run again, once
        if out.returncode == 0 or "AST constructor recursion depth mismatch" not in out.stdout + out.stderr:
            break
    summary = out.stdout[-6000:]
    assert out.returncode == 0, summary + out.stderr[-2000:]
    assert report.exists() and json.loads(report.read_text())  # the run really happened
