"""Segmind's own Python SDK (`segmind`, pinned in test/clients/requirements.txt) against a
running klein-serve, changed in nothing but base_url and api_key
(test/e2e/segmind-python.test.ts runs it and checks what it prints).

What the SDK sends (segmind 1.3.0, segmind/client.py and segmind/v2.py):
- run_sync(slug, **p): POST {base_url}/{slug}, JSON body p, headers x-api-key,
  X-Initiator: SDK-PY, User-Agent: segmind-python-sdk/1.3.0; returns the httpx.Response.
- run(slug, **p) = submit_async(slug, **p).wait(): POST {base_url minus its last /vN}/v2/{slug};
  needs request_id, status_url and response_url in the answer; GETs status_url (as given,
  so it must be absolute) every second until status is COMPLETED (then GETs response_url
  and returns that body) or FAILED (raises InferenceFailed with the status body's `error`).
  Any other status is polled until the deadline (600 s by default), then InferenceTimeout.
- A non-2xx/3xx answer raises SegmindError(status, detail=body["error"]).
- accounts, models, files, generations, webhooks, pixelflows, finetune call Segmind's own hosts
  with fixed URLs that base_url does not change.

Usage: segmind_client.py BASE_URL KEY. Prints one JSON object.
"""
import json
import sys
import tempfile

import httpx
import segmind
from segmind import InferenceFailed, SegmindClient, SegmindError

from png_size import png_size  # test/clients/, the script's own folder

SLUG = "flux-2-klein-4b"
FAST = {"steps": 2, "cfg": 1, "width": 64, "height": 64}



def raised(call) -> dict:
    """The exception a call raised, as the fields a Segmind user reads."""
    try:
        call()
    except SegmindError as e:
        out = {"class": type(e).__name__, "status": e.status, "detail": e.detail}
        if isinstance(e, InferenceFailed):
            out["status_body"] = e.status_body
        return out
    return {"class": None}


class Unreachable(Exception):
    """Raised by the request hook below, so no request leaves this machine."""


def segmind_hosts(key: str) -> dict:
    """Where each call outside inference goes: the request hook (httpx's public event hook
    on the SDK's client) records the URL and stops the request before it is sent."""
    client = SegmindClient(api_key=key, base_url="http://127.0.0.1:1/v1")
    seen: list = []

    def stop(request: httpx.Request) -> None:
        seen.append(str(request.url))
        raise Unreachable()

    client._client.event_hooks["request"] = [stop]
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.flush()
        calls = {
            "accounts.current": client.accounts.current,
            "models.list": client.models.list,
            "files.upload": lambda: client.files.upload(f.name),
            "generations.list": client.generations.list,
            "webhooks.get": client.webhooks.get,
            "pixelflows.run": lambda: client.pixelflows.run(workflow_id="w", data={}),
            "finetune.list": client.finetune.list,
        }
        out = {}
        for name, call in calls.items():
            seen.clear()
            try:
                call()
            except Unreachable:
                pass
            out[name] = seen[0] if seen else None
    return out


def main() -> None:
    base_url, key = sys.argv[1:3]
    client = SegmindClient(api_key=key, base_url=f"{base_url}/v1")
    out: dict = {"version": segmind.__version__}

    # Synchronous: one blocking POST /v1/flux-2-klein-4b; the image bytes are the body.
    r = client.run_sync(SLUG, prompt="a lighthouse at dusk", seed=7, **FAST)
    out["run_sync"] = {
        "status": r.status_code,
        "content_type": r.headers["content-type"],
        "size": png_size(r.content),
        "seed": r.headers.get("x-seed-value"),
        "request_id": r.headers.get("x-request-id"),
    }

    # Asynchronous with the SDK's own submit and polling (1 s between polls).
    result = client.run(SLUG, prompt="a harbour at noon", seed=8, **FAST)
    image = httpx.get(result["output"], headers={"x-api-key": key})
    out["run"] = {
        "status": result["status"],
        "request_id": result["request_id"],
        "seed": result["input"]["seed"],
        "output_is_url": result["output"].startswith(base_url + "/"),
        "output_size": png_size(image.content),
        "cost": result["metrics"]["cost"],
    }

    job = client.submit_async(SLUG, prompt="a kite", **FAST)
    done = job.wait(timeout=60, interval=0.1)
    out["submit_async"] = {
        "request_id": job.request_id,
        "status_url": job.status_url,
        "response_url": job.response_url,
        "result_status": done["status"],
        "result_request_id": done["request_id"],
    }

    # A request that fails in the engine (KLEIN_ENGINE_FAULTS=1 in the test's server).
    failing = client.submit_async(SLUG, prompt="boom [[fault:internal]]", **FAST)
    out["failed"] = raised(lambda: failing.wait(timeout=60, interval=0.1))
    out["failed"]["record_error"] = failing.result()["error"]

    # A cancelled request: CANCELLED is our extension (contract §4); the SDK knows only
    # COMPLETED and FAILED as terminal, so its wait() runs to its deadline.
    slow = client.submit_async(SLUG, prompt="slow [[fault:sleep:300]]", **{**FAST, "steps": 20})
    c = httpx.post(slow.submit_response["cancel_url"], headers={"x-api-key": key})
    out["cancelled"] = raised(lambda: slow.wait(timeout=1.5, interval=0.1))
    out["cancelled"]["cancel_answer"] = c.json()
    out["cancelled"]["status_now"] = slow.status()["status"]

    # Errors: SegmindError carries our status and our message (the body's `error`).
    out["bad_param_sync"] = raised(lambda: client.run_sync(SLUG, prompt="x", **{**FAST, "steps": 500}))
    out["unknown_param_sync"] = raised(lambda: client.run_sync(SLUG, prompt="x", num_images=2, **FAST))
    out["bad_param_async"] = raised(lambda: client.run(SLUG, prompt="x", **{**FAST, "steps": 500}))
    wrong = SegmindClient(api_key="kl_wrong", base_url=f"{base_url}/v1")
    out["bad_key_sync"] = raised(lambda: wrong.run_sync(SLUG, prompt="x", **FAST))
    out["bad_key_async"] = raised(lambda: wrong.run(SLUG, prompt="x", **FAST))

    out["segmind_hosts"] = segmind_hosts(key)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
