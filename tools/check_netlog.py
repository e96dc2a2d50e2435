"""Fail when a page loaded in Chromium made a network request (``make check-report``).

Reads Chromium's ``--log-net-log`` file: requests the page started carry its origin as initiator;
the browser's own background requests (update checks, account lookups) carry "not an origin" and
are not the page's doing."""

import json
import sys
from pathlib import Path

log = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
names = {value: key for key, value in log["constants"]["logEventTypes"].items()}
requests = [
    event["params"] for event in log["events"]
    if names.get(event["type"]) == "URL_REQUEST_START_JOB" and "url" in event.get("params", {})
]
page = [r["url"] for r in requests if r.get("initiator") != "not an origin" and not r["url"].startswith(("data:", "file:"))]
if page:
    sys.exit("the page made network requests: " + ", ".join(page))
print(f"no network request from the page ({len(requests)} background requests of the browser itself ignored)")
