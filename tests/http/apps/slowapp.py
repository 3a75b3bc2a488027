"""Apps for the subprocess tests (imported as tests.http.apps.slowapp via --app-dir)."""
import os
import sys
import time

import netcore


def app(request):
    if request.path.startswith("/sleep/"):
        # tests wait for this line: the request is then in flight
        print(f"app: sleeping {request.path}", file=sys.stderr, flush=True)
        time.sleep(float(request.path.split("/")[2]))
    if request.path == "/pid":
        return str(os.getpid())
    return netcore.Response(b"ok")
