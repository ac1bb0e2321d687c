"""`spanqa serve` (the HTTP API and web page) and `spanqa keys create|list|revoke`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..indexer.cli import add_limit_arguments, limits_from_args
from ..reader.cli import add_backend_argument
from .ask_cli import add_reading_arguments, positive

log = logging.getLogger("spanqa.serve")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the HTTP API and the web page")
    p.add_argument("--index", default=None, help="index directory (default data/index)")
    p.add_argument("--reader", default=None,
                   help="reader run or checkpoint directory, or hub id (default: the hub's "
                        "SpanBERT SQuAD 2.0 reader, else the one `spanqa demo` caches)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=positive(int, 0), default=8000)
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                   help="a reverse proxy whose X-Forwarded-For header names the client "
                        "(repeatable; an address or network, e.g. 127.0.0.1 or 10.0.0.0/8). "
                        "Without one the header is ignored and the client is the address "
                        "the connection comes from, so that nobody can pick the address "
                        "the anonymous-feedback rate limit sees")
    p.add_argument("--api-docs", action="store_true",
                   help="serve the interactive API docs at /docs and /redoc (FastAPI's "
                        "pages load Swagger UI and ReDoc from a CDN and run inline script, "
                        "so they get a weaker content policy; off by default. "
                        "/openapi.json is always served)")
    p.add_argument("--keys", default=None, help="API keys file (default <index>/../api_keys.json)")
    p.add_argument("--protect-all", action="store_true",
                   help="require an API key on every /v1 endpoint (health excepted), not only "
                        "on uploads, removals and the feedback export")
    p.add_argument("--anonymous-feedback", action="store_true",
                   help="take answer feedback without an API key (else it needs one): "
                        "rate-limited per client address, size-capped, marked anonymous and "
                        "left out of the feedback export unless asked for")
    p.add_argument("--anonymous-feedback-per-minute", type=positive(float, 0.001), default=6.0,
                   help="anonymous feedback posts a client may send a minute (after a burst "
                        "of 5)")
    p.add_argument("--anonymous-feedback-max-rows", type=positive(int, 0), default=10_000,
                   help="anonymous feedback records kept; beyond them new anonymous posts "
                        "get 507")
    p.add_argument("--max-batch", type=positive(int, 1), default=8,
                   help="questions read in one reader pass")
    p.add_argument("--batch-wait-ms", type=positive(float, 0), default=5.0,
                   help="how long the first question of a batch waits for company")
    p.add_argument("--retrieval-k", type=positive(int, 1), default=20,
                   help="passages read per question (a request may ask for 1-100)")
    p.add_argument("--mode", choices=("bm25", "dense", "hybrid"), default="hybrid",
                   help="default retrieval mode")
    add_reading_arguments(p)
    p.add_argument("--uploads", default=None, help="where uploads are kept "
                   "(default <index>/../uploads)")
    p.add_argument("--feedback-db", default=None, help="default <index>/../feedback.db")
    p.add_argument("--max-upload-mb", type=positive(float, 0.001), default=50.0)
    p.add_argument("--max-json-kb", type=positive(float, 1), default=1024.0)
    add_limit_arguments(p)
    add_backend_argument(p, "--reader-backend")
    p.set_defaults(func=run_serve)

    keys = sub.add_parser("keys", help="API keys for the HTTP API's write endpoints")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="create a key; it is printed once, stored hashed")
    create.add_argument("--name", required=True, help="who or what the key is for")
    listing = ksub.add_parser("list", help="the keys' names, ids and creation times")
    listing.add_argument("--json", action="store_true")
    revoke = ksub.add_parser("revoke", help="remove a key by name or id")
    revoke.add_argument("key", help="the key's name or id")
    for parser in (create, listing, revoke):
        parser.add_argument("--keys", default=None,
                            help="API keys file (default <index>/../api_keys.json)")
        parser.add_argument("--index", default=None, help="index directory (default data/index)")
    create.set_defaults(func=_run_keys_create)
    listing.set_defaults(func=_run_keys_list)
    revoke.set_defaults(func=_run_keys_revoke)


def default_keys_file(index: str | Path | None) -> Path:
    from ..core.paths import default_index

    return Path(index or default_index()).resolve().parent / "api_keys.json"


# ------------------------------------------------------------------------- keys


def _store(args: argparse.Namespace):
    from .auth import KeyStore

    return KeyStore(args.keys or default_keys_file(args.index))


def _run_keys_create(args: argparse.Namespace) -> int:
    store = _store(args)
    key, record = store.create(args.name)
    print(key)
    print(f"created API key {record['name']!r} (id {record['id']}) in {store.path}; it is "
          "shown only this once. Send it in the X-API-Key header.", file=sys.stderr)
    return 0


def _run_keys_list(args: argparse.Namespace) -> int:
    store = _store(args)
    records = store.records()
    if args.json:
        print(json.dumps(records, indent=2, allow_nan=False))
    elif not records:
        print(f"no API keys in {store.path} (spanqa keys create --name NAME)")
    else:
        for r in records:
            print(f"{r.get('id', ''):<10} {r.get('name', ''):<24} {r.get('created', '')}")
    return 0


def _run_keys_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    gone = store.revoke(args.key)
    if not gone:
        print(f"spanqa: error: no key named or with id {args.key!r} in {store.path}",
              file=sys.stderr)
        return 1
    for r in gone:
        print(f"revoked {r.get('name')!r} (id {r.get('id')})")
    return 0


# ------------------------------------------------------------------------- serve


def load_qa(index: Path, reader: str | None, **kwargs):
    """(QA, reader name). Without --reader: the hub's SpanBERT SQuAD 2.0 reader when it can
    be had, else the reader `spanqa demo` cached, else NoReaderError (exit 2)."""
    from ..runtime.hub import ModelLoadError
    from .default_reader import HUB_READER, cached_demo_reader, hub_reachable, no_reader_error
    from .qa import QA

    if reader:
        return QA(index, reader, **kwargs), str(reader)
    why = "the hub is not reachable"
    if hub_reachable(HUB_READER):
        try:
            return QA(index, HUB_READER, **kwargs), HUB_READER
        except (ModelLoadError, OSError, ValueError) as exc:
            why = str(exc).splitlines()[0]
            log.warning("could not load %s (%s); trying the demo's reader", HUB_READER, why)
    demo = cached_demo_reader()
    if demo is not None:
        log.info("using the demo's reader in %s (%s: %s)", demo, HUB_READER, why)
        return QA(index, str(demo), **kwargs), str(demo)
    raise no_reader_error(why)


def run_serve(args: argparse.Namespace) -> int:
    from .logs import configure_json_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_json_logging(root.level or logging.INFO)
    qa = settings = None
    try:
        qa, settings = _prepare(args)
    finally:
        if qa is None:  # not starting: the caller gets its own logging back
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
    if qa is None:
        return 2

    import uvicorn

    from .server import create_app

    app = create_app(qa, settings)
    log.info("SpanQA on http://%s:%d (API description at /openapi.json%s)", args.host,
             args.port, ", docs at /docs" if settings.api_docs else "")
    uvicorn.run(app, **uvicorn_options(args))
    return 0


def uvicorn_options(args: argparse.Namespace) -> dict:
    """How `spanqa serve` runs uvicorn. uvicorn by default believes X-Forwarded-For from
    127.0.0.1, where this server listens by default: any local client could then name its
    own address, and with a new one per post get round the anonymous-feedback rate limit
    and fill its row cap. So the header counts only from the proxies --trusted-proxy
    names."""
    trusted = [address for address in args.trusted_proxy if address.strip()]
    return {"host": args.host, "port": args.port, "log_config": None, "access_log": False,
            "server_header": False, "timeout_graceful_shutdown": 10,
            "proxy_headers": bool(trusted),
            "forwarded_allow_ips": ",".join(trusted) if trusted else None}


def _prepare(args: argparse.Namespace):
    """(QA, Settings), or (None, None) after printing why the server cannot start."""
    from ..core.paths import default_index
    from ..index.layout import IndexDir, IndexNotFoundError
    from .auth import KeyFileError, KeyStore
    from .settings import Settings

    index = Path(args.index or default_index())
    if not IndexDir(index).exists():
        raise IndexNotFoundError(
            f"no index in {index}: build one first with `spanqa index build PATH --index "
            f"{index}` (or pass --index DIR)")
    keys_file = Path(args.keys) if args.keys else default_keys_file(index)
    limits = limits_from_args(args)  # a bad limit is an error before the models load
    try:
        KeyStore(keys_file).check()
    except KeyFileError as exc:
        print(f"spanqa: error: {exc}", file=sys.stderr)
        return None, None
    qa, reader_name = load_qa(index, args.reader, retrieval_k=args.retrieval_k, mode=args.mode,
                              adaptive=not args.read_all, first_read=args.first_read,
                              reader_backend=args.reader_backend)
    settings = Settings(
        index=index, keys_file=keys_file, protect_all=args.protect_all,
        anonymous_feedback=args.anonymous_feedback,
        anonymous_feedback_per_minute=args.anonymous_feedback_per_minute,
        anonymous_feedback_max_rows=args.anonymous_feedback_max_rows,
        uploads_dir=Path(args.uploads) if args.uploads else None,
        feedback_db=Path(args.feedback_db) if args.feedback_db else None,
        max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_json_bytes=int(args.max_json_kb * 1024), reader_name=reader_name,
        parse_limits=limits, api_docs=args.api_docs)
    return qa, settings
