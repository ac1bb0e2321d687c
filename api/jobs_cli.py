"""`spanqa jobs cancel`: the HTTP API's job cancel from a shell.

Indexing jobs live in the running server's memory and its upload folders, so the command
asks the server (DELETE /v1/jobs/{id}) instead of touching those files behind its back.
"""

from __future__ import annotations

import argparse
import os
import sys

KEY_ENV = "SPANQA_API_KEY"


def add_parser(sub: argparse._SubParsersAction) -> None:
    jobs = sub.add_parser("jobs", help="indexing jobs of a running server")
    jsub = jobs.add_subparsers(dest="jobs_command", required=True)
    cancel = jsub.add_parser("cancel", help="cancel a queued or running job: it publishes "
                                            "nothing and the index stays as it was")
    cancel.add_argument("job_id")
    cancel.add_argument("--server", default="http://127.0.0.1:8000",
                        help="the server's base URL (default http://127.0.0.1:8000)")
    cancel.add_argument("--key", default=None,
                        help=f"an API key (default ${KEY_ENV}); cancelling needs one")
    cancel.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it")
    cancel.set_defaults(func=_run_cancel)


def _run_cancel(args: argparse.Namespace) -> int:
    """0 when the cancel was taken, 1 when the server refused it (unknown, finished, bad
    key), 2 when the server could not be reached."""
    import httpx

    from .auth import HEADER

    key = args.key or os.environ.get(KEY_ENV)
    headers = {HEADER: key} if key else {}
    url = f"{args.server.rstrip('/')}/v1/jobs/{args.job_id}"
    try:
        response = httpx.delete(url, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"spanqa: error: could not reach {args.server}: {exc}", file=sys.stderr)
        return 2
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:300]}
    if response.status_code != 202:
        print(f"spanqa: error: HTTP {response.status_code}: {body.get('detail')}",
              file=sys.stderr)
        return 1
    print(f"job {body['id']}: {body['status']} ({body['message']})")
    return 0
