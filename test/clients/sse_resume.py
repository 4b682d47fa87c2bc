"""A request's event stream followed with sseclient-py (pinned in requirements.txt), left
after two steps and resumed with Last-Event-ID, as a Python client would: the standard
library's http.client gives the byte stream, sseclient-py parses it.

    python sse_resume.py BASE_URL API_KEY REQUEST_ID

Prints JSON: {"first": [...], "second": [...]}, each event as [id, event, data].
"""
import http.client
import json
import sys
import time
from urllib.parse import urlsplit

import sseclient


def open_stream(base, key, request_id, last_event_id):
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    headers = {"x-api-key": key, "accept": "text/event-stream"}
    headers["Last-Event-ID"] = last_event_id
    conn.request("GET", f"/v2/requests/{request_id}/events", headers=headers)
    res = conn.getresponse()
    if res.status != 200:
        raise SystemExit(f"events: HTTP {res.status}: {res.read()!r}")
    return conn, sseclient.SSEClient(res)


def main():
    base, key, request_id = sys.argv[1:4]
    first, second = [], []
    # From the first step ("0"), however long this interpreter took to start.
    conn, client = open_stream(base, key, request_id, last_event_id="0")
    for ev in client.events():
        first.append([ev.id, ev.event, json.loads(ev.data)])
        if sum(1 for e in first if e[1] == "progress") == 2:
            break
    # Leave mid-run, miss a few steps, come back where we left off.
    conn.close()
    time.sleep(0.6)
    conn, client = open_stream(base, key, request_id, last_event_id=first[-1][0])
    for ev in client.events():
        second.append([ev.id, ev.event, json.loads(ev.data)])
        if ev.event in ("completed", "failed", "cancelled"):
            break
    conn.close()
    print(json.dumps({"first": first, "second": second}))


if __name__ == "__main__":
    main()
