"""The HTTP API: a real `spanqa serve` process over a real index, with a tiny random reader.

One server runs for the whole module (starting one costs seconds on two cores). The tiny
reader's answers are arbitrary, so answers are checked for what must hold for any reader:
the documented fields, and offsets that point at the answer in the passage and in the
source file. A few checks that need a faulty pipeline or a second configuration use the
same app in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch

from spanqa.api.calibration import Calibration
from spanqa.index import store
from spanqa.index.layout import IndexDir
from spanqa.indexer.build import IndexConfig, update_index
from spanqa.reader.squad import load_squad
from spanqa.retriever.search import Hit
from spanqa.runtime.device import cpu_has_bf16
from spanqa.runtime.embedder import Embedder
from spanqa.runtime.openvino import openvino_available, openvino_offers_bf16

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
DOCS = {
    "company/zephyr.txt": "The Zephyr company was founded in 1987 by Ada Marsh in Lyon. "
                          "It builds small wind turbines for farms.\n\n"
                          "Zephyr moved its headquarters to Grenoble in 2004.",
    "places/freedonia.md": "# Freedonia\n\nThe capital of Freedonia is Fredville. "
                           "Freedonia exports cheese and violins.",
    "places/rivers.txt": "The Amazon river carries more water than any other river. "
                         "It flows through Brazil, Peru and Colombia.",
}
ANSWER_FIELDS = {"text", "confidence", "score", "passage_id", "document_id", "title", "path",
                 "page", "start", "end", "document_start", "document_end", "context",
                 "passage_rank", "occurrences"}
HIT_FIELDS = {f.name for f in fields(Hit)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spanqa_main(*args: str) -> tuple[int, str, str]:
    """The `spanqa` CLI in this process (a subprocess would import torch again: ~15 s)."""
    from spanqa.api.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("serve")
    docs = root / "docs"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    embedder = Embedder("minilm")
    # Short passages: the tiny reader has 256 positions.
    update_index(root / "index", add=[docs], embedder=embedder, progress=False,
                 config=IndexConfig(words=60, overlap=10))
    reader = shutil.copytree(tiny_model, root / "reader")
    Calibration(threshold=0.0).save(reader)  # random logits: keep every answer
    return SimpleNamespace(root=root, docs=docs, index=root / "index", reader=reader,
                           keys=root / "api_keys.json", uploads=root / "uploads",
                           embedder=embedder)


@pytest.fixture(scope="module")
def server(env):
    port = free_port()
    log_path = env.root / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spanqa.api.cli", "serve", "--index", str(env.index),
             "--reader", str(env.reader), "--port", str(port), "--keys", str(env.keys),
             "--max-upload-mb", "2", "--batch-wait-ms", "10"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            if client.get("/v1/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)
    yield SimpleNamespace(client=client, proc=proc, log=log_path, port=port)
    client.close()
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def key(env, server) -> str:
    code, out, err = spanqa_main("keys", "create", "--name", "tests", "--keys", str(env.keys))
    assert code == 0, err
    return out.strip()


def wait_job(client: httpx.Client, job_id: str, timeout: float = 90, seen: list | None = None
             ) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if seen is not None:
            seen.append(job["message"])
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def source_file(env: SimpleNamespace, path: str) -> Path:
    """The file behind a path the API showed: the full path for a caller with a key; for
    one without, `uploads/...` or a path relative to the collection root (the docs folder,
    or the test's root once a document from elsewhere is indexed)."""
    if Path(path).is_absolute():
        return Path(path)
    if path.startswith("uploads/"):
        return env.uploads / path.removeprefix("uploads/")
    found = [base / path for base in (env.docs, env.root) if (base / path).is_file()]
    assert len(found) == 1, (path, found)
    return found[0]


def check_answers(result: dict, env: SimpleNamespace) -> None:
    by_id = {p["passage_id"]: p for p in result["passages"]}
    for a in result["answers"]:
        assert set(a) == ANSWER_FIELDS
        passage = by_id.get(a["passage_id"])  # only the top passages are shown
        if passage is not None:
            assert passage["text"][a["start"]:a["end"]] == a["text"]
            assert a["document_start"] == passage["start"] + a["start"]
        assert a["document_end"] - a["document_start"] == len(a["text"])
        ctx = a["context"]
        assert ctx["text"][ctx["answer_start"]:ctx["answer_end"]] == a["text"]
        assert f"**{a['text']}**" in ctx["marked"]
        if a["path"].endswith(".txt"):  # plain text: the document text is the file itself
            source = source_file(env, a["path"]).read_text(encoding="utf-8")
            assert source[a["document_start"]:a["document_end"]] == a["text"]


# ------------------------------------------------------------------------- the service


def test_health_stats_and_request_ids(server):
    c = server.client
    r = c.get("/v1/health", headers={"X-Request-ID": "probe-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "probe-42"
    health = r.json()
    assert health["status"] == "ok" and health["generation"].startswith("gen-")
    assert health["passages"] >= 3 and "reader" in health
    generated = c.get("/v1/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    hostile = c.get("/v1/health", headers={"X-Request-ID": "a b\tc" + "x" * 300})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])

    stats = c.get("/v1/stats").json()
    assert stats["index"]["passages"] == health["passages"]
    assert stats["calibration"]["source"] == "defaults" and stats["calibration"]["threshold"] == 0
    assert stats["batching"]["max_batch"] == 8 and stats["reader"]["name"]
    # The server runs in another process: what `auto` picks there, on this machine.
    if torch.cuda.is_available():
        expected = ("torch", "bfloat16")
    elif openvino_available():  # the dtype OpenVINO says it computes in
        expected = ("openvino",
                    "bfloat16" if cpu_has_bf16() and openvino_offers_bf16() else "float32")
    else:
        expected = ("torch", "bfloat16") if cpu_has_bf16() else ("onnx", "float32")
    assert (stats["reader"]["backend"], stats["reader"]["dtype"]) == expected
    assert set(stats["jobs"]) == {"queued", "running", "done", "failed", "cancelled"}


def test_ask_returns_spans_that_point_into_passages_and_files(server, env):
    c = server.client
    r = c.post("/v1/ask", json={"question": "  When was the Zephyr company founded?  ",
                                "top_k": 3}, headers={"X-Request-ID": "ask-1"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["request_id"] == "ask-1" == r.headers["x-request-id"]
    assert result["question"] == "When was the Zephyr company founded?"
    assert {"answers", "handoff", "passages", "timing_ms", "calibrated"} <= set(result)
    assert 1 <= len(result["answers"]) <= 3 and not result["handoff"]
    assert result["passages"] and set(result["passages"][0]) == HIT_FIELDS
    check_answers(result, env)

    # Without a key, paths are relative to the collection, and so is the filter.
    prefix = "places/"
    narrow = c.post("/v1/ask", json={"question": "What is the capital of Freedonia?",
                                     "retrieval_k": 1, "mode": "bm25",
                                     "filters": {"path_prefix": prefix}}).json()
    assert len(narrow["passages"]) == 1 and narrow["passages"][0]["path"].startswith(prefix)
    assert all(a["path"].startswith(prefix) for a in narrow["answers"])
    check_answers(narrow, env)
    nothing = c.post("/v1/ask", json={"question": "Freedonia?", "filters": {"title": "nope"}})
    assert nothing.status_code == 200 and nothing.json()["handoff"] is True


def test_search_returns_hits(server):
    r = server.client.post("/v1/search", json={"question": "capital of Freedonia",
                                               "top_k": 2, "mode": "bm25"})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert 1 <= len(hits) <= 2 and set(hits[0]) == HIT_FIELDS
    assert "Fredville" in hits[0]["text"]
    dense = server.client.post("/v1/search", json={"question": "wind turbines"}).json()["hits"]
    assert dense and all(set(h) == HIT_FIELDS for h in dense)


BAD_ASKS = [
    ({"question": ""}, "question"),
    ({"question": "   \n\t "}, "question"),
    ({"question": "why? " * 20_000}, "question"),
    ({"question": 5}, "question"),
    ({"question": None}, "question"),
    ({}, "question"),
    ({"question": "ok?", "top_k": -1}, "top_k"),
    ({"question": "ok?", "top_k": 0}, "top_k"),
    ({"question": "ok?", "top_k": 21}, "top_k"),
    ({"question": "ok?", "top_k": "3"}, "top_k"),
    ({"question": "ok?", "top_k": True}, "top_k"),
    ({"question": "ok?", "top_k": 2.5}, "top_k"),
    ({"question": "ok?", "retrieval_k": 0}, "retrieval_k"),
    ({"question": "ok?", "retrieval_k": 101}, "retrieval_k"),
    ({"question": "ok?", "mode": "fuzzy"}, "mode"),
    ({"question": "ok?", "mode": 1}, "mode"),
    ({"question": "ok?", "filters": "docs/"}, "filters"),
    ({"question": "ok?", "filters": ["docs/"]}, "filters"),
    ({"question": "ok?", "filters": {"tags": "a"}}, "tags"),
    ({"question": "ok?", "filters": {"tags": [1]}}, "tags"),
    ({"question": "ok?", "filters": {"path_prefix": 3}}, "path_prefix"),
    ({"question": "ok?", "filters": {"path_prefix": "a\x00b"}}, "path_prefix"),
    ({"question": "ok?", "filters": {"colour": "red"}}, "colour"),
    ({"question": "ok?", "topk": 3}, "topk"),
]


@pytest.mark.parametrize(("body", "field"), BAD_ASKS)
def test_bad_questions_are_422_naming_the_field(server, body, field):
    for route in ("/v1/ask", "/v1/search"):
        if route == "/v1/search" and (field == "retrieval_k" or body.get("top_k") == 21):
            continue  # not a search field; search allows up to 100 hits
        r = server.client.post(route, json=body)
        assert r.status_code == 422, (route, body, r.text)
        data = r.json()
        assert data["request_id"] == r.headers["x-request-id"]
        assert any(field in map(str, e["loc"]) for e in data["detail"]), data
        assert len(r.content) < 5000  # the offending input is not echoed back


def test_malformed_bodies_and_routes_are_4xx(server):
    c = server.client
    json_type = {"content-type": "application/json"}
    cases = [
        (c.post("/v1/ask", content=b'{"question": "unfinished', headers=json_type), {422}),
        (c.post("/v1/ask", content=b'{"question": "caf\xe9 \xff\xfe?"}', headers=json_type),
         {400, 422}),
        (c.post("/v1/ask", content=b"\x89PNG\r\n\x1a\n\x00\x00", headers=json_type), {400, 422}),
        (c.post("/v1/ask", content=b"[1, 2]", headers=json_type), {422}),
        (c.post("/v1/ask", content=b"null", headers=json_type), {422}),
        (c.post("/v1/ask", content=b"", headers=json_type), {422}),
        (c.post("/v1/ask", content=b"question=hi",
                headers={"content-type": "application/x-www-form-urlencoded"}), {422}),
        (c.post("/v1/ask", content=b'{"question": "hi"}', headers={"content-type": "text/plain"}),
         {422}),
        (c.get("/v1/ask"), {405}),
        (c.get("/v1/nothing-here"), {404}),
        (c.post("/nope", json={}), {404}),
        (c.get("/v1/jobs/no-such-job"), {404}),
        (c.get("/v1/documents", params={"limit": 0}), {422}),
        (c.get("/v1/documents", params={"limit": "many"}), {422}),
        (c.get("/v1/documents", params={"offset": -1}), {422}),
        (c.get("/v1/documents", params={"offset": 2**70}), {422}),
        (c.get("/static/no-such-file.js"), {404}),
        (c.get("/static/../api/server.py"), {404}),
    ]
    for r, expected in cases:
        assert r.status_code in expected, (r.request.method, r.request.url, r.text)
        if r.status_code != 405 and r.headers.get("content-type", "").startswith("application"):
            assert "detail" in r.json()
    # Without a key, a home directory is refused (it would tell which users exist).
    r = c.post("/v1/search", json={"question": "rivers",
                                    "filters": {"path_prefix": "~nosuchuser-xyz/docs"}})
    assert r.status_code == 422 and "absolute" in r.text, r.text


@pytest.mark.parametrize("question", ["???", "🙂🙂", "a\x00b?", "ü" * 1000, "<script>x</script>",
                                      "SELECT * FROM passages; --"])
def test_odd_but_valid_questions_are_answered(server, env, question):
    for mode in ("bm25", "hybrid"):
        r = server.client.post("/v1/ask", json={"question": question, "mode": mode,
                                                "retrieval_k": 100, "top_k": 20})
        assert r.status_code == 200, r.text
        check_answers(r.json(), env)


def test_bodies_over_the_limit_are_413(server):
    c = server.client
    big = b'{"question": "' + b"x" * (MiB + 10) + b'"}'
    r = c.post("/v1/ask", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: the bytes are counted as they arrive
        yield b'{"question": "'
        for _ in range(20):
            yield b"y" * (64 * 1024)
        yield b'"}'

    r = c.post("/v1/ask", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert c.get("/v1/health").status_code == 200  # and the server is fine


# ------------------------------------------------------------------------- auth


def test_write_endpoints_need_a_key_and_say_how_to_create_one(server, env):
    assert not env.keys.exists()
    c = server.client
    r = c.post("/v1/documents", files={"files": ("a.txt", b"hello", "text/plain")})
    assert r.status_code == 401 and "spanqa keys create" in r.json()["detail"]
    assert str(env.root) not in r.text  # the keys file's place is not told
    assert c.get("/v1/feedback/export").status_code == 401
    assert c.delete("/v1/documents/whatever").status_code == 401
    assert not env.uploads.exists() or not any(env.uploads.iterdir())


def test_keys_from_the_cli_open_the_write_endpoints(server, env, key):
    c = server.client
    stored = json.loads(env.keys.read_text())
    assert key not in env.keys.read_text() and len(stored["keys"]) == 1
    assert stored["keys"][0]["name"] == "tests" and len(stored["keys"][0]["sha256"]) == 64
    assert env.keys.stat().st_mode & 0o077 == 0
    code, out, _ = spanqa_main("keys", "list", "--keys", str(env.keys))
    assert code == 0 and "tests" in out and stored["keys"][0]["sha256"] not in out

    assert c.get("/v1/feedback/export").status_code == 401
    wrong = c.get("/v1/feedback/export", headers={"X-API-Key": key[:-1] + "?"})
    assert wrong.status_code == 401 and "invalid" in wrong.json()["detail"]
    assert c.get("/v1/feedback/export", headers={"X-API-Key": key}).status_code == 200
    assert c.delete("/v1/documents/0000", headers={"X-API-Key": key}).status_code == 404

    code, temp, _ = spanqa_main("keys", "create", "--name", "temp", "--keys", str(env.keys))
    assert code == 0
    assert c.get("/v1/feedback/export", headers={"X-API-Key": temp.strip()}).status_code == 200
    code, _, _ = spanqa_main("keys", "revoke", "temp", "--keys", str(env.keys))
    assert code == 0
    assert c.get("/v1/feedback/export",
                 headers={"X-API-Key": temp.strip()}).status_code == 401
    assert spanqa_main("keys", "create", "--name", "tests", "--keys", str(env.keys))[0] == 2


# ------------------------------------------------------------------------- documents


def test_upload_index_search_delete(server, env, key):
    c, auth = server.client, {"X-API-Key": key}
    quokka = "The Quokka Institute was established in 2003 in Perth by Lena Fox.\n"
    files = [
        ("files", ("quokka.txt", quokka.encode(), "text/plain")),
        ("files", ("../../etc/evil name!.md", b"# Evil\n\nNothing to see in Evilton.", "x")),
        ("files", ("empty.txt", b"", "text/plain")),
        ("files", ("binary.txt", bytes(range(256)) * 40, "text/plain")),
    ]
    r = c.post("/v1/documents", files=files, headers=auth)
    assert r.status_code == 202, r.text
    upload = r.json()
    assert upload["files"] == ["quokka.txt", "evil_name.md", "empty.txt", "binary.txt"]
    folder = env.uploads / upload["upload_id"]
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(
        upload["files"])

    job = wait_job(c, upload["job_id"])
    assert job["status"] == "done", job
    assert job["kind"] == "add" and job["files"] == upload["files"]
    report = job["report"]
    assert report["added"] == 2 and report["generation"].startswith("gen-")
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert skipped == {"empty.txt": "empty document", "binary.txt": "binary file"}
    assert (folder / "empty.txt").exists()  # nothing uploaded is ever deleted

    assert c.get("/v1/health").json()["generation"] == report["generation"]
    listing = c.get("/v1/documents", params={"limit": 100}).json()
    assert listing["total"] == len(DOCS) + 2 == len(listing["documents"])
    doc = next(d for d in listing["documents"] if d["path"].endswith("quokka.txt"))
    assert doc["passages"] >= 1 and doc["title"] and doc["metadata"]["path"] == doc["path"]
    page = c.get("/v1/documents", params={"limit": 2, "offset": 1}).json()["documents"]
    assert [d["id"] for d in page] == [d["id"] for d in listing["documents"][1:3]]

    hits = c.post("/v1/search", json={"question": "Quokka Institute Perth",
                                      "mode": "bm25"}).json()["hits"]
    assert hits[0]["document_id"] == doc["id"]
    answer = c.post("/v1/ask", json={"question": "When was the Quokka Institute established?",
                                     "filters": {"path_prefix": f"uploads/{folder.name}"}}
                    ).json()
    assert answer["answers"] and {a["document_id"] for a in answer["answers"]} <= {
        doc["id"], next(d["id"] for d in listing["documents"] if "evil" in d["path"])}
    check_answers(answer, env)

    r = c.delete(f"/v1/documents/{doc['id']}", headers=auth)
    assert r.status_code == 202
    removal = wait_job(c, r.json()["job_id"])
    assert removal["status"] == "done" and removal["report"]["removed"] == 1
    ids = [d["id"] for d in c.get("/v1/documents", params={"limit": 100}).json()["documents"]]
    assert doc["id"] not in ids and len(ids) == len(DOCS) + 1
    hits = c.post("/v1/search", json={"question": "Quokka Institute Perth",
                                      "mode": "bm25"}).json()["hits"]
    assert doc["id"] not in {h["document_id"] for h in hits}
    assert c.delete(f"/v1/documents/{doc['id']}", headers=auth).status_code == 404


def test_bad_uploads_are_415_or_413_and_save_nothing(server, env, key):
    c, auth = server.client, {"X-API-Key": key}
    before = sorted(env.uploads.iterdir())
    for name in ("program.exe", "README", "archive.tar.gz", ".txt", ""):
        r = c.post("/v1/documents", headers=auth,
                   files=[("files", ("fine.txt", b"fine", "text/plain")),
                          ("files", (name, b"data", "application/octet-stream"))])
        assert r.status_code in (415, 422), (name, r.text)
        if r.status_code == 415:
            assert ".txt" in r.json()["detail"] and ".pdf" in r.json()["detail"]
            if name:
                assert name in r.json()["detail"]
    r = c.post("/v1/documents", headers=auth,
               files={"files": ("big.txt", b"words " * (MiB // 2), "text/plain")})
    assert r.status_code == 413, r.text

    def streamed():  # no Content-Length: counted as it arrives
        yield (b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
               b"Content-Type: text/plain\r\n\r\n")
        for _ in range(40):
            yield b"z" * (64 * 1024)
        yield b"\r\n--b--\r\n"

    r = c.post("/v1/documents", content=streamed(),
               headers={**auth, "content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413, r.text
    assert c.post("/v1/documents", headers=auth, data={"files": "not a file"}).status_code == 422
    assert c.post("/v1/documents", headers=auth, json={"files": []}).status_code == 422
    no_boundary = {**auth, "content-type": "multipart/form-data"}
    assert c.post("/v1/documents", headers=no_boundary, content=b"--x\r\n").status_code == 400
    garbled = {**auth, "content-type": "multipart/form-data; boundary=zz"}
    r = c.post("/v1/documents", headers=garbled, content=b"--zz\r\nnonsense\r\n\x00\xff")
    assert 400 <= r.status_code < 500, r.text
    assert sorted(env.uploads.iterdir()) == before


def test_a_job_waits_for_the_index_lock_held_by_another_writer(server, env, key):
    c, auth = server.client, {"X-API-Key": key}
    messages: list[str] = []
    with IndexDir(env.index).writer():  # what `spanqa index add` holds while it runs
        r = c.post("/v1/documents", headers=auth,
                   files={"files": ("lock.txt", b"Locks are waited for politely.", "text/plain")})
        assert r.status_code == 202
        deadline = time.monotonic() + 30
        while not any("waiting for index lock" in m for m in messages):
            assert time.monotonic() < deadline, messages
            job = c.get(f"/v1/jobs/{r.json()['job_id']}").json()
            # Queued behind an earlier job on a busy machine, then running: never done or
            # failed while another writer holds the lock.
            assert job["status"] in ("queued", "running"), job
            messages.append(job["message"] or "")
            time.sleep(0.1)
    job = wait_job(c, r.json()["job_id"])
    assert job["status"] == "done" and job["report"]["added"] == 1


def server_rss(server) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for the server")


def test_jobs_are_cancelled_over_http_and_publish_nothing(server, env, key):
    c, auth = server.client, {"X-API-Key": key}
    generation = c.get("/v1/health").json()["generation"]

    def upload(name: str, text: str) -> str:
        r = c.post("/v1/documents", headers=auth, files={"files": (name, text.encode(), "x")})
        assert r.status_code == 202, r.text
        return r.json()["job_id"]

    with IndexDir(env.index).writer():  # the first job runs, waiting for the lock
        running = upload("cancel-a.txt", "The Okapi Society meets on Tuesdays.")
        deadline = time.monotonic() + 60
        while "waiting for index lock" not in c.get(f"/v1/jobs/{running}").json()["message"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        queued = upload("cancel-b.txt", "The Tapir Guild meets on Fridays.")
        assert c.get(f"/v1/jobs/{queued}").json()["status"] == "queued"

        assert c.delete(f"/v1/jobs/{queued}").status_code == 401  # keyed like uploads
        r = c.delete(f"/v1/jobs/{queued}", headers=auth)
        assert r.status_code == 202 and r.json()["status"] == "cancelled", r.text
        code, out, err = spanqa_main("jobs", "cancel", running, "--key", key,
                                     "--server", f"http://127.0.0.1:{server.port}")
        assert code == 0 and out.startswith(f"job {running}: running (cancelling"), (out, err)
        job = wait_job(c, running)  # stops while the lock is still held: it never got it
        assert job["status"] == "cancelled" and job["report"] is None, job

    assert c.delete(f"/v1/jobs/{running}", headers=auth).status_code == 409
    code, _, err = spanqa_main("jobs", "cancel", queued, "--key", key,
                               "--server", f"http://127.0.0.1:{server.port}")
    assert code == 1 and "HTTP 409" in err and "already finished (cancelled)" in err
    assert c.delete("/v1/jobs/no-such-job", headers=auth).status_code == 404
    assert c.get("/v1/health").json()["generation"] == generation
    assert IndexDir(env.index).current().name == generation
    # Jobs run in order: once a job submitted after the cancelled queued one is done, the
    # worker has taken that one off the queue, and it must have stayed cancelled.
    after = wait_job(c, upload("after-the-cancels.txt", "The Dormouse Club gathers on Sundays."))
    assert after["status"] == "done" and after["report"]["added"] == 1, after
    assert c.get(f"/v1/jobs/{queued}").json()["status"] == "cancelled"
    assert c.get(f"/v1/jobs/{running}").json()["status"] == "cancelled"
    for question in ("Okapi Society", "Tapir Guild"):
        hits = c.post("/v1/search", json={"question": question, "mode": "bm25"}).json()["hits"]
        assert not any("cancel-" in h["path"] for h in hits)


def test_hostile_uploads_under_an_ask_load(server, env, key, tmp_path):
    """The issue's bar: while a zip-bomb DOCX (300 MB unpacked) and a 100,000-deep HTML
    file are indexed, as two jobs, 8 clients ask and search in a loop over HTTP until both
    jobs finish. No 5xx and every question answered; both files skipped with their
    reasons, the file beside the bomb indexed; the server's RSS (sampled throughout) grows
    by less than 200 MB over what it had under the same load before the uploads."""
    from test_isolation import make_docx_bomb

    c, auth = server.client, {"X-API-Key": key}
    bomb = make_docx_bomb(tmp_path / "bomb.docx", 300).read_bytes()
    deep = f"<html><body>{'<div>' * 100_000}x{'</div>' * 100_000}</body></html>".encode()
    questions = ["When was Zephyr founded?", "What is the capital of Freedonia?",
                 "Which river carries the most water?", "Who founded Zephyr?"]
    uploads_done = threading.Event()
    lock = threading.Lock()
    seen: list[tuple[str, int]] = []  # (route, status) of every request
    unanswered: list[str] = []
    errors: list[BaseException] = []
    rounds = [0] * 8

    def client(n: int) -> None:
        with httpx.Client(base_url=c.base_url, timeout=120) as mine:
            i = 0
            while not uploads_done.is_set():
                route = ("/v1/ask", "/v1/search")[i % 2]
                try:
                    r = mine.post(route, json={"question": questions[(n + i) % 4],
                                               "top_k": 2})
                    body = r.json() if r.status_code == 200 else {}
                    answered = bool(body.get("answers") if route == "/v1/ask"
                                    else body.get("hits"))
                except Exception as exc:  # surfaced below: threads swallow errors
                    with lock:
                        errors.append(exc)
                    return
                with lock:
                    seen.append((route, r.status_code))
                    if not answered:
                        unanswered.append(f"{route} {r.status_code}: {r.text[:200]}")
                i += 1
                rounds[n] = i

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(8)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 120
        while min(rounds) < 2 and not errors:  # the load runs; then its memory is the base
            assert time.monotonic() < deadline, f"the clients did not get going: {rounds}"
            time.sleep(0.1)
        before = peak = server_rss(server)
        began = time.monotonic()
        job_ids = []
        for files in ([("files", ("bomb.docx", bomb, "application/octet-stream")),
                       ("files", ("fine.txt", b"The Serval Choir sings after the bomb.",
                                  "text/plain"))],
                      [("files", ("deep.html", deep, "text/html"))]):
            r = c.post("/v1/documents", headers=auth, files=files)
            assert r.status_code == 202, r.text
            job_ids.append(r.json()["job_id"])
        finished: dict[str, dict] = {}
        deadline = time.monotonic() + 300
        while len(finished) < len(job_ids):
            assert time.monotonic() < deadline, f"the jobs did not finish: {finished}"
            peak = max(peak, server_rss(server))
            for job_id in job_ids:
                job = c.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in ("done", "failed", "cancelled"):
                    finished[job_id] = job
            time.sleep(0.1)
        seconds = time.monotonic() - began
        peak = max(peak, server_rss(server))
    finally:
        uploads_done.set()
        for t in threads:
            t.join(180)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not errors, errors
    bombed, deepened = (finished[job_id] for job_id in job_ids)
    for job in (bombed, deepened):
        assert job["status"] == "done", job
    assert bombed["report"]["added"] == 1 and deepened["report"]["added"] == 0
    skipped = {s["path"]: s["reason"] for job in (bombed, deepened)
               for s in job["report"]["skipped"]}
    assert set(skipped) == {"bomb.docx", "deep.html"}
    assert skipped["bomb.docx"].startswith("unpacked size over the 200 MB limit (")
    assert skipped["deep.html"] == "HTML nested deeper than the 1024-level limit"
    failed = [status for _, status in seen if status >= 500]
    asks = sum(route == "/v1/ask" for route, _ in seen)
    grown = peak - before
    print(f"\nhostile uploads under load: {len(seen)} requests ({asks} asks) in "
          f"{seconds:.1f} s until both jobs finished, {len(failed)} 5xx, peak RSS "
          f"{(grown) / MiB:+.0f} MB ({before / MiB:.0f} -> {peak / MiB:.0f} MB)")
    assert not failed, f"{len(failed)} 5xx of {len(seen)} requests"
    assert not unanswered, unanswered[:5]
    assert asks >= 8 and all(status == 200 for _, status in seen)
    assert server.proc.poll() is None
    assert grown < 200 * MiB, f"the server grew by {grown / MiB:.0f} MB"
    hits = c.post("/v1/search", json={"question": "Serval Choir", "mode": "bm25"}).json()
    assert hits["hits"][0]["path"].endswith("/fine.txt")  # indexing went on beside the bomb


def test_concurrent_questions_during_an_upload(server, env, key):
    c, auth = server.client, {"X-API-Key": key}
    sentences = [f"Station {i} of the survey recorded {i * 7} herons near lake {i % 13}."
                 for i in range(200)]
    r = c.post("/v1/documents", headers=auth,
               files={"files": ("survey.txt", " ".join(sentences).encode(), "text/plain")})
    assert r.status_code == 202
    questions = ["When was Zephyr founded?", "What is the capital of Freedonia?",
                 "Which river carries the most water?", "Who founded Zephyr?"]
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(4):
            try:
                resp = c.post("/v1/ask", json={"question": questions[(n + i) % 4], "top_k": 2})
                statuses.append(resp.status_code)
                if resp.status_code == 200:
                    check_answers(resp.json(), env)
            except Exception as exc:  # surfaced below: threads swallow assertion errors
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and statuses == [200] * 32
    job = wait_job(c, r.json()["job_id"])
    assert job["status"] == "done" and job["report"]["added"] == 1
    batching = c.get("/v1/stats").json()["batching"]
    assert batching["largest_batch"] > 1 and batching["mean_batch_size"] >= 1
    assert batching["requests"] >= 32


def test_an_update_by_another_writer_is_followed(server, env, key):
    c = server.client
    extra = env.root / "cli-docs" / "walrus.txt"
    extra.parent.mkdir()
    extra.write_text("The Walrus Society meets every Tuesday in Tromsø.", encoding="utf-8")
    report = update_index(env.index, add=[extra], embedder=env.embedder, progress=False)
    deadline = time.monotonic() + 20
    while c.get("/v1/health").json()["generation"] != report.generation:
        assert time.monotonic() < deadline, "the server did not follow the new generation"
        time.sleep(0.2)
    question = {"question": "Walrus Society", "mode": "bm25"}
    hits = c.post("/v1/search", json=question, headers={"X-API-Key": key}).json()
    assert hits["hits"][0]["path"] == str(extra.resolve())
    # Without a key: relative to the collection root, now the folder above docs/ and cli-docs/
    hits = c.post("/v1/search", json=question).json()
    assert hits["hits"][0]["path"] == "cli-docs/walrus.txt"


# ------------------------------------------------------------------------- what leaks


def strings(value) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def test_security_headers_on_the_page_static_files_and_api(server):
    c = server.client
    for path in ("/", "/static/app.js", "/static/style.css", "/static/favicon.svg"):
        r = c.get(path)
        assert r.status_code == 200, path
        policy = {d.split()[0]: d.split()[1:] for d in
                  r.headers["content-security-policy"].split("; ")}
        assert policy["default-src"] == policy["script-src"] == policy["style-src"] == [
            "'self'"], (path, policy)
        assert policy["frame-ancestors"] == ["'none'"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
    page = c.get("/").text
    # What the policy would block: no inline script or style, nothing from elsewhere.
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="static/app.js" defer>']
    assert '<script src="static/app.js" defer></script>' in page
    assert re.search(r"<style|\sstyle=|\son\w+=|https?://|data:", page) is None
    assert re.search(r"@import|url\(", c.get("/static/style.css").text) is None

    key_less = c.post("/v1/ask", json={"question": "What is the capital of Freedonia?"})
    for r in (key_less, c.get("/v1/health"), c.get("/v1/stats"), c.get("/metrics"),
              c.get("/openapi.json"), c.get("/v1/jobs/nope"), c.post("/v1/ask", json={}),
              c.post("/v1/ask", content=b"x" * (MiB + 1),
                     headers={"content-type": "application/json"})):
        assert r.status_code in (200, 404, 413, 422), r.request.url
        assert r.headers["x-content-type-options"] == "nosniff", r.request.url
        assert r.headers["x-frame-options"] == "DENY", r.request.url
        assert r.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"), r.request.url
    for path in ("/docs", "/redoc"):  # off without --api-docs: a 404 under the API's policy
        docs = c.get(path)
        assert docs.status_code == 404, path
        assert docs.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"), path


def test_callers_without_a_key_see_no_server_paths(server, env, key):
    c, auth = server.client, {"X-API-Key": key}
    tmp = str(env.root)
    question = {"question": "When was the Quokka Institute established?", "top_k": 5}

    def responses(headers: dict) -> dict[str, dict]:
        out = {"ask": c.post("/v1/ask", json=question, headers=headers),
               "search": c.post("/v1/search", json=question, headers=headers),
               "documents": c.get("/v1/documents", params={"limit": 1000}, headers=headers),
               "jobs": c.get("/v1/jobs", headers=headers),
               "stats": c.get("/v1/stats", headers=headers),
               "health": c.get("/v1/health", headers=headers)}
        for job in out["jobs"].json()["jobs"]:
            out[job["id"]] = c.get(f"/v1/jobs/{job['id']}", headers=headers)
        assert all(r.status_code == 200 for r in out.values()), out
        return {name: r.json() for name, r in out.items()}

    keyless = responses({})
    assert any(j["upload_dir"] for j in keyless["jobs"]["jobs"])  # uploads were made
    for name, body in keyless.items():
        for text in strings(body):
            assert not text.startswith("/") and tmp not in text, (name, text)
    documents = keyless["documents"]["documents"]
    assert {d["path"] for d in documents} >= {
        "docs/company/zephyr.txt", "docs/places/freedonia.md", "cli-docs/walrus.txt"}
    upload = next(d for d in documents if d["path"].endswith("/survey.txt"))
    assert re.fullmatch(r"uploads/[\w-]+/survey\.txt", upload["path"])
    assert all(d["metadata"]["path"] == d["path"] for d in documents)
    assert keyless["ask"]["answers"] and all(
        source_file(env, a["path"]).is_file() for a in keyless["ask"]["answers"])
    assert all(j["upload_dir"] is None or j["upload_dir"].startswith("uploads/")
               for j in keyless["jobs"]["jobs"])
    assert keyless["stats"]["reader"]["name"] == keyless["health"]["reader"] == "reader"

    keyed = responses(auth)
    assert all(Path(d["path"]).is_absolute() and Path(d["path"]).is_file()
               for d in keyed["documents"]["documents"])
    assert all(Path(a["path"]).is_file() for a in keyed["ask"]["answers"])
    assert all(Path(h["path"]).is_absolute() for h in keyed["search"]["hits"])
    assert any(j["upload_dir"] and j["upload_dir"].startswith(str(env.uploads))
               for j in keyed["jobs"]["jobs"])
    assert keyed["stats"]["reader"]["name"] == keyed["health"]["reader"] == str(env.reader)
    # A wrong key is told, not quietly treated as none.
    wrong = c.get("/v1/documents", headers={"X-API-Key": key + "x"})
    assert wrong.status_code == 401 and "invalid" in wrong.json()["detail"]


def test_path_filters_take_the_paths_callers_see(server, env, key):
    c, auth = server.client, {"X-API-Key": key}
    body = {"question": "capital of Freedonia", "mode": "bm25"}
    places = str((env.docs / "places").resolve())
    for prefix in (places, "~/docs", "../docs/places", "docs/../../serve"):
        r = c.post("/v1/search", json={**body, "filters": {"path_prefix": prefix}})
        assert r.status_code == 422, (prefix, r.text)
        assert ["body", "filters", "path_prefix"] in [e["loc"] for e in r.json()["detail"]]
        assert str(env.root) not in r.text
    hits = c.post("/v1/search", json={**body, "filters": {"path_prefix": "docs/places"}}
                  ).json()["hits"]
    assert hits and all(h["path"].startswith("docs/places/") for h in hits)
    keyed = c.post("/v1/search", json={**body, "filters": {"path_prefix": places}},
                   headers=auth).json()["hits"]
    assert [h["passage_id"] for h in keyed] == [h["passage_id"] for h in hits]
    assert all(h["path"].startswith(places) for h in keyed)
    relative = c.post("/v1/search", json={**body, "filters": {"path_prefix": "docs/places"}},
                      headers=auth).json()["hits"]  # the public form works with a key too
    assert relative == keyed
    # With a key, a home directory that does not exist is no match, not an error.
    r = c.post("/v1/search", json={"question": "rivers",
                                    "filters": {"path_prefix": "~nosuchuser-xyz/docs"}},
               headers=auth)
    assert r.status_code == 200 and r.json()["hits"] == []


# ------------------------------------------------------------------------- feedback


def test_feedback_exports_squad_that_load_squad_reads(server, env, key, tmp_path):
    c, auth = server.client, {"X-API-Key": key}
    result = c.post("/v1/ask", json={"question": "Who founded the Zephyr company?"}).json()
    a = result["answers"][0]
    good = {"question": result["question"], "answer": a["text"], "passage_id": a["passage_id"],
            "start": a["start"], "end": a["end"], "correct": True, "comment": "right"}
    # Feedback is training data: without --anonymous-feedback it needs a key.
    r = c.post("/v1/feedback", json={**good, "question": "Who poisoned the export?"})
    assert r.status_code == 401, r.text
    assert "API key" in r.json()["detail"] and "anonymous" in r.json()["detail"]
    wrong = c.post("/v1/feedback", json=good, headers={"X-API-Key": key + "x"})
    assert wrong.status_code == 401 and "invalid" in wrong.json()["detail"]
    r = c.post("/v1/feedback", json=good, headers=auth)
    assert r.status_code == 201 and isinstance(r.json()["id"], int)
    assert r.json()["anonymous"] is False
    bad = {**good, "question": "Where is Zephyr based?", "correct": False}
    assert c.post("/v1/feedback", json=bad, headers=auth).status_code == 201

    assert c.post("/v1/feedback", json={**good, "passage_id": "nope"},
                  headers=auth).status_code == 404
    for broken in ({"end": good["start"]}, {"correct": "yes"}, {"start": -1},
                   {"end": 10_000}, {"answer": a["text"] + "!"}, {"question": " "}):
        r = c.post("/v1/feedback", json={**good, **broken}, headers=auth)
        assert r.status_code == 422, (broken, r.text)
    assert c.get("/v1/stats").json()["feedback"] == {"total": 2, "correct": 1, "anonymous": 0}

    for params in ({}, {"include_anonymous": "true"}):  # nothing anonymous was stored
        questions = [qa["question"] for article in c.get(
            "/v1/feedback/export", headers=auth, params=params).json()["data"]
            for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
        assert questions == [good["question"]]
    export = c.get("/v1/feedback/export", headers={"X-API-Key": key})
    assert export.status_code == 200
    data = export.json()
    assert data["version"] == "1.1"
    path = tmp_path / "feedback-squad.json"
    path.write_text(export.text, encoding="utf-8")
    examples, report = load_squad(path)
    assert report.skipped == 0 and not report.problems and len(examples) == 1
    example = examples[0]
    assert example.question == good["question"]
    assert example.answers[0].text == a["text"]
    assert example.context[example.answers[0].start:][:len(a["text"])] == a["text"]


# ------------------------------------------------------------------------- the rest


def prometheus_samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(name, labels): value} from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if m and not line.startswith("#"):
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def test_metrics_page_docs_and_logs(server):
    c = server.client
    c.post("/v1/ask", json={"question": "Who founded Zephyr?"}, headers={"X-Request-ID": "m-1"})
    metrics = c.get("/metrics")
    assert metrics.status_code == 200
    samples = prometheus_samples(metrics.text)
    ask = {"route": "/v1/ask", "method": "POST"}
    assert samples[("spanqa_http_requests_total", frozenset({**ask, "status": "200"}.items()))] >= 1
    assert ("spanqa_http_requests_total", frozenset({**ask, "status": "422"}.items())) in samples
    assert ("spanqa_http_request_duration_seconds_bucket",
            frozenset({"route": "/v1/ask", "le": "0.005"}.items())) in samples
    assert samples[("spanqa_reader_batch_size_count", frozenset())] >= 1
    assert samples[("spanqa_jobs", frozenset({"status": "done"}.items()))] >= 1
    assert samples[("spanqa_jobs_finished_total",
                    frozenset({"kind": "add", "status": "done"}.items()))] >= 1
    assert any(("route", "unmatched") in labels for _, labels in samples)
    assert "/v1/nothing-here" not in metrics.text  # raw paths never become label values

    page = c.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert c.get("/docs").status_code == 404  # loads from a CDN: only with --api-docs
    schema = c.get("/openapi.json").json()
    assert {"/v1/ask", "/v1/search", "/v1/documents", "/v1/feedback"} <= set(schema["paths"])

    lines = [json.loads(line) for line in server.log.read_text().splitlines()
             if line.startswith("{")]
    mine = [x for x in lines if x.get("request_id") == "m-1" and x.get("path") == "/v1/ask"]
    assert mine and mine[0]["status"] == 200 and mine[0]["method"] == "POST"
    assert {"time", "level", "message", "duration_ms"} <= set(mine[0])


# ------------------------------------------------------------------------- in-process


@pytest.fixture(scope="module")
def local(env, tmp_path_factory):
    """The app in this process, over the same index (what `create_app` is for)."""
    from spanqa.api.qa import QA
    from spanqa.reader.reader import Reader
    from spanqa.retriever.search import Retriever

    reader = Reader.from_pretrained(env.reader)
    return SimpleNamespace(
        qa=lambda cls=QA: cls(Retriever(env.index, embedder=env.embedder), reader,
                              calibration=Calibration(threshold=0.0)),
        root=tmp_path_factory.mktemp("local"))


def test_protect_all_guards_every_v1_endpoint_but_health(local):
    from fastapi.testclient import TestClient

    from spanqa.api.auth import KeyStore
    from spanqa.api.server import Settings, create_app

    keys = KeyStore(local.root / "keys.json")
    secret, _ = keys.create("ops")
    settings = Settings(protect_all=True, keys_file=keys.path,
                        uploads_dir=local.root / "uploads",
                        feedback_db=local.root / "protect-all.db",
                        anonymous_feedback=True)  # --protect-all wins
    with TestClient(create_app(local.qa(), settings)) as c:
        assert c.get("/v1/health").status_code == 200
        body = {"question": "capital of Freedonia?", "mode": "bm25"}
        hits = c.post("/v1/search", json=body, headers={"X-API-Key": secret}).json()["hits"]
        feedback = {"question": body["question"], "answer": "Fredville",
                    "passage_id": hits[0]["passage_id"], "start": 0, "end": 9, "correct": False}
        # Every read endpoint, each with the status its route gives once the key is sent:
        # a missing route would be a 404 "Not Found" at both steps (no 401 without the key).
        for method, path, kwargs, status in (
                ("POST", "/v1/ask", {"json": body}, 200),
                ("POST", "/v1/search", {"json": body}, 200),
                ("GET", "/v1/stats", {}, 200),
                ("GET", "/v1/documents", {}, 200),
                ("GET", "/v1/jobs", {}, 200),
                ("GET", "/v1/jobs/x", {}, 404),  # the route's own 404: no such job
                ("POST", "/v1/feedback", {"json": feedback}, 201)):
            r = c.request(method, path, **kwargs)
            assert r.status_code == 401 and "API key" in r.json()["detail"], (path, r.text)
            r = c.request(method, path, headers={"X-API-Key": secret}, **kwargs)
            assert r.status_code == status, (path, r.text)
        r = c.get("/v1/jobs/x", headers={"X-API-Key": secret})
        assert r.json()["detail"] == "no job with id 'x'"
        assert c.get("/v1/stats", headers={"X-API-Key": secret}).json()["auth"] == {
            "keys": 1, "protect_all": True, "anonymous_feedback": False}


def test_a_failing_pipeline_is_a_500_with_the_request_id(local, caplog):
    from fastapi.testclient import TestClient

    from spanqa.api.qa import QA
    from spanqa.api.server import Settings, create_app

    class Broken(QA):
        def read(self, retrieved):
            if any("boom" in r.request.question for r in retrieved):
                raise RuntimeError("the reader exploded")
            return super().read(retrieved)

    settings = Settings(uploads_dir=local.root / "uploads", keys_file=local.root / "k.json",
                        feedback_db=local.root / "feedback.db")
    with TestClient(create_app(local.qa(Broken), settings), raise_server_exceptions=False) as c:
        r = c.post("/v1/ask", json={"question": "boom?", "mode": "bm25"},
                   headers={"X-Request-ID": "fail-1"})
        assert r.status_code == 500
        assert r.json()["request_id"] == "fail-1" and "detail" in r.json()
        assert "the reader exploded" not in r.text
        assert c.post("/v1/ask", json={"question": "fine?", "mode": "bm25"}).status_code == 200
    assert any(getattr(rec, "request_id", None) == "fail-1" and rec.exc_info
               for rec in caplog.records)


def test_a_batch_that_fails_is_retried_one_by_one():
    from spanqa.api.microbatch import MicroBatcher

    calls: list[list[str]] = []

    def run(requests):
        calls.append(list(requests))
        if "bad" in requests:
            raise ValueError("bad question")
        return [r.upper() for r in requests]

    async def scenario():
        batcher = MicroBatcher(run, max_batch=4, max_wait_ms=50)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(q) for q in ("a", "bad", "c")),
                                        return_exceptions=True), batcher.stats()
        finally:
            await batcher.stop()

    results, stats = asyncio.run(scenario())
    assert results[0] == "A" and results[2] == "C" and isinstance(results[1], ValueError)
    assert calls[0] == ["a", "bad", "c"] and calls[1:] == [["a"], ["bad"], ["c"]]
    assert stats["batches"] == 1 and stats["largest_batch"] == 3
    assert stats["retried_one_by_one"] == 1


def test_serve_errors_name_the_fix(env, tmp_path, monkeypatch):
    code, _, err = spanqa_main("serve", "--index", str(tmp_path / "no-index"))
    assert code == 2 and "spanqa index build" in err
    monkeypatch.setenv("SPANQA_DATA", str(tmp_path / "data"))  # no cached demo reader
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    began = time.monotonic()
    code, _, err = spanqa_main("serve", "--index", str(env.index))
    assert code == 2 and "spanqa demo" in err and "--reader" in err
    assert time.monotonic() - began < 30


def test_unfinished_uploads_are_queued_again_at_start(env, local):
    from fastapi.testclient import TestClient

    from spanqa.api.qa import QA
    from spanqa.api.server import Settings, create_app
    from spanqa.reader.reader import Reader
    from spanqa.retriever.search import Retriever

    index = shutil.copytree(env.index, local.root / "index-copy")
    folder = local.root / "uploads-restart" / "20250101-000000-abcd"
    folder.mkdir(parents=True)
    note = folder / "note.txt"
    note.write_text("The Ibex Club was left behind by a crash.", encoding="utf-8")
    (folder / ".spanqa-job.json").write_text(json.dumps({
        "id": "old-job", "status": "running", "files": ["note.txt"],
        "paths": [str(note.resolve())]}))
    qa = QA(Retriever(index, embedder=env.embedder), Reader.from_pretrained(env.reader))
    settings = Settings(uploads_dir=folder.parent, keys_file=local.root / "k.json",
                        feedback_db=local.root / "restart.db")
    with TestClient(create_app(qa, settings)) as c:
        job = wait_job(c, "old-job")
        assert job["status"] == "done" and job["report"]["added"] == 1, job
        hits = c.post("/v1/search", json={"question": "Ibex Club", "mode": "bm25"}).json()
        assert hits["hits"][0]["path"] == f"uploads/{folder.name}/note.txt"  # no key here
    assert json.loads((folder / ".spanqa-job.json").read_text())["status"] == "done"


def test_at_restart_a_job_died_in_twice_fails_and_a_cancelled_one_stays_so(env, local):
    from fastapi.testclient import TestClient

    from spanqa.api.qa import QA
    from spanqa.api.server import Settings, create_app
    from spanqa.reader.reader import Reader
    from spanqa.retriever.search import Retriever

    index = shutil.copytree(env.index, local.root / "index-died")
    uploads = local.root / "uploads-died"
    job_files = {}
    for job_id, crashes in (("died-once", None), ("died-twice", 1), ("cancelled", None)):
        folder = uploads / f"20250101-000000-{job_id}"
        folder.mkdir(parents=True)
        note = folder / f"{job_id}.txt"
        note.write_text(f"The {job_id} job holds the Narwhal Lodge.", encoding="utf-8")
        record = {"id": job_id, "status": "running", "files": [note.name],
                  "paths": [str(note.resolve())]}
        if crashes is not None:  # resumed once already, and running when the server died
            record["crashes"] = crashes
        if job_id == "cancelled":  # the server stopped before the job saw its cancel
            record["cancel_requested"] = True
        job_files[job_id] = folder / ".spanqa-job.json"
        job_files[job_id].write_text(json.dumps(record))
    generation = IndexDir(index).current().name
    qa = QA(Retriever(index, embedder=env.embedder), Reader.from_pretrained(env.reader))
    settings = Settings(uploads_dir=uploads, keys_file=local.root / "k.json",
                        feedback_db=local.root / "died.db")
    with TestClient(create_app(qa, settings)) as c:
        failed = c.get("/v1/jobs/died-twice").json()
        assert failed["status"] == "failed" and failed["crashes"] == 2, failed
        assert "stopped while running this job 2 times" in failed["error"]
        cancelled = c.get("/v1/jobs/cancelled").json()
        assert cancelled["status"] == "cancelled" and cancelled["cancel_requested"], cancelled
        resumed = wait_job(c, "died-once")
        assert resumed["status"] == "done" and resumed["crashes"] == 1, resumed
        assert resumed["report"]["added"] == 1
        assert c.get("/v1/jobs/cancelled").json()["status"] == "cancelled"  # never ran
    assert json.loads(job_files["died-twice"].read_text())["status"] == "failed"
    assert json.loads(job_files["cancelled"].read_text())["status"] == "cancelled"
    assert json.loads(job_files["died-once"].read_text())["crashes"] == 1
    db = store.open_db(IndexDir(index).current())
    paths = [row["path"] for row in db["documents"].rows]
    assert any(p.endswith("died-once.txt") for p in paths)
    assert not any(p.endswith(("died-twice.txt", "cancelled.txt")) for p in paths)
    assert IndexDir(index).current().name != generation  # only died-once published


def test_an_orderly_stop_during_a_job_is_not_a_crash(env, local):
    """A stop in order while the running job is somewhere it does not look at the stop
    flag (here: waiting for the embedding model, which a question's query embedding holds;
    in life, writing a large generation) outlasts stop()'s wait. What the job file says at
    that moment is what a process exiting then leaves: the next start must resume the job
    as stopped in order, its crash count unchanged."""
    from fastapi.testclient import TestClient

    from spanqa.api.auth import KeyStore
    from spanqa.api.jobs import JOB_FILE, SharedEmbedder
    from spanqa.api.qa import QA
    from spanqa.api.server import Settings, create_app
    from spanqa.reader.reader import Reader
    from spanqa.retriever.search import Retriever

    index = shutil.copytree(env.index, local.root / "index-stopped")
    keys = KeyStore(local.root / "stopped-keys.json")
    secret, _ = keys.create("ops")
    settings = Settings(uploads_dir=local.root / "uploads-stopped", keys_file=keys.path,
                        feedback_db=local.root / "stopped.db")
    reader = Reader.from_pretrained(env.reader)
    app = create_app(QA(Retriever(index, embedder=env.embedder), reader), settings)
    jobs = app.state.jobs
    with jobs.embedder.lock:  # the job's embedding waits for it, not looking at the flag
        with TestClient(app) as c:
            r = c.post("/v1/documents", headers={"X-API-Key": secret}, files={
                "files": ("marmot.txt", b"The Marmot Lodge meets at dawn.", "text/plain")})
            assert r.status_code == 202, r.text
            job_id = r.json()["job_id"]
            deadline = time.monotonic() + 120
            while True:  # until the job thread waits for the model
                frame = sys._current_frames().get(jobs._thread.ident)
                if frame is not None and frame.f_code is SharedEmbedder.encode.__code__:
                    break
                assert time.monotonic() < deadline, c.get(f"/v1/jobs/{job_id}").json()
                time.sleep(0.05)
            assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
        # The lifespan's shutdown ran jobs.stop(), whose wait ran out: the job runs on.
        assert jobs._thread.is_alive()
        job_file = settings.uploads_dir / r.json()["upload_id"] / JOB_FILE
        left = json.loads(job_file.read_text())
    jobs._thread.join(120)  # (it now stops at its next look, or finishes)
    assert not jobs._thread.is_alive()
    assert left["status"] == "queued" and left["crashes"] == 0, left
    job_file.write_text(json.dumps(left))  # as if the process had exited at the stop
    again = create_app(QA(Retriever(index, embedder=env.embedder), reader), settings)
    with TestClient(again) as c:
        job = wait_job(c, job_id)
        assert job["status"] == "done" and job["crashes"] == 0, job
        assert "stopped while running" not in job["message"]
        hits = c.post("/v1/search", json={"question": "Marmot Lodge", "mode": "bm25"}).json()
        assert hits["hits"][0]["path"].endswith("/marmot.txt")


def test_job_files_saved_from_many_threads_at_once_stay_whole(tmp_path):
    """The job thread and request threads (cancels) save the same job file: it must never
    be torn, and the last write must hold the job's last state."""
    from spanqa.api.jobs import JOB_FILE, JobFinishedError, JobQueue
    from spanqa.core.atomic import write_json_atomic

    target = tmp_path / "record.json"
    written = {(w, n): {"writer": w, "n": n, "pad": f"{w}-{n}-" + "x" * 200_000}
               for w in range(8) for n in range(20)}
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        start.wait()
        for n in range(20):
            try:
                write_json_atomic(target, written[w, n])
            except BaseException as exc:  # surfaced below
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    final = json.loads(target.read_text())
    assert final == written[final["writer"], final["n"]]
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary left

    # A cancel racing the job's own last save: the file ends saying how the job ended.
    queue = JobQueue(None, index=tmp_path / "no-index")
    for round_ in range(20):
        folder = tmp_path / f"upload-{round_}"
        folder.mkdir()
        job = queue.submit_add([folder / "a.txt"], ["a.txt"], folder)
        assert queue._begin(job)  # what the job thread does as it starts the job
        go = threading.Barrier(5)

        def cancel(job_id: str = job.id, go: threading.Barrier = go) -> None:
            go.wait()
            for _ in range(10):
                with contextlib.suppress(JobFinishedError):
                    queue.cancel(job_id)

        cancels = [threading.Thread(target=cancel) for _ in range(4)]
        for t in cancels:
            t.start()
        go.wait()
        queue._update(job, status="cancelled", finished=time.time(),  # the job thread's end
                      message="cancelled; nothing was published, the index is unchanged")
        for t in cancels:
            t.join(60)
        record = json.loads((folder / JOB_FILE).read_text())
        assert record["status"] == "cancelled", (round_, record)


@contextlib.contextmanager
def uvicorn_serving(app, *serve_args: str):
    """`app` under uvicorn, run with the options `spanqa serve` gives it (`serve_args` are
    its flags), on a free port in a thread of this process: a client for it over HTTP."""
    import uvicorn

    from spanqa.api.cli import build_parser
    from spanqa.api.serve_cli import uvicorn_options

    port = free_port()
    args = build_parser().parse_args(["serve", "--port", str(port), *serve_args])
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(args)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(60)


def test_forwarded_for_counts_only_from_a_trusted_proxy(local):
    """A direct client that forges X-Forwarded-For gets no fresh rate-limit bucket: the
    header is believed only from the proxy --trusted-proxy names, and then IPv6 clients are
    grouped by their /64."""
    from spanqa.api.server import Settings, create_app

    def feedback(c: httpx.Client, forwarded: str) -> int:
        hit = c.post("/v1/search", json={"question": "capital of Freedonia?",
                                         "mode": "bm25"}).json()["hits"][0]
        return c.post("/v1/feedback", headers={"X-Forwarded-For": forwarded}, json={
            "question": "Capital?", "answer": "x", "passage_id": hit["passage_id"],
            "start": 0, "end": 1, "correct": False}).status_code

    def settings(name: str) -> Settings:
        return Settings(anonymous_feedback=True, anonymous_feedback_burst=2,
                        anonymous_feedback_per_minute=0.01,  # no refill during the test
                        keys_file=local.root / "forwarded-keys.json",
                        uploads_dir=local.root / "uploads", feedback_db=local.root / name)

    with uvicorn_serving(create_app(local.qa(), settings("direct.db"))) as c:
        # Every post comes from 127.0.0.1, whatever it claims: one bucket of 2.
        assert [feedback(c, f"203.0.113.{i}") for i in range(3)] == [201, 201, 429]
    with uvicorn_serving(create_app(local.qa(), settings("proxied.db")),
                         "--trusted-proxy", "127.0.0.1") as c:
        # Behind the trusted proxy each forwarded client has its own bucket ...
        assert [feedback(c, "203.0.113.7") for _ in range(3)] == [201, 201, 429]
        assert feedback(c, "203.0.113.8") == 201
        # ... and an IPv6 client one for its /64, whichever address in it it takes.
        assert [feedback(c, f"2001:db8:0:1::{i}") for i in (1, 2, 3)] == [201, 201, 429]
        assert feedback(c, "2001:db8:0:2::1") == 201


def test_api_docs_only_when_asked_for(local):
    from fastapi.testclient import TestClient

    from spanqa.api.server import Settings, create_app

    settings = Settings(api_docs=True, keys_file=local.root / "docs-keys.json",
                        uploads_dir=local.root / "uploads", feedback_db=local.root / "docs.db")
    with TestClient(create_app(local.qa(), settings)) as c:
        for path in ("/docs", "/redoc"):  # they load from a CDN: the framing rule only
            r = c.get(path)
            assert r.status_code == 200 and "text/html" in r.headers["content-type"], path
            assert r.headers["content-security-policy"] == "frame-ancestors 'none'"
            assert r.headers["x-frame-options"] == "DENY"
        assert c.get("/openapi.json").headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'")


def test_log_lines_stay_strict_json_with_a_nested_nan():
    import logging

    from spanqa.api.logs import JsonFormatter

    record = logging.LogRecord("spanqa.test", logging.INFO, __file__, 1, "scores", None, None)
    record.route = {"scores": [1.0, float("nan"), {"deep": (float("-inf"), 2)}]}
    line = JsonFormatter().format(record)

    def no_constant(name: str):
        raise AssertionError(f"{name} in a log line: {line}")

    data = json.loads(line, parse_constant=no_constant)
    assert data["route"] == {"scores": [1.0, None, {"deep": [None, 2]}]}
    assert data["message"] == "scores"


def export_questions(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [qa["question"] for article in response.json()["data"]
            for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


def test_anonymous_feedback_when_the_operator_allows_it(local):
    import sqlite3

    from fastapi.testclient import TestClient

    from spanqa.api.auth import KeyStore
    from spanqa.api.routes.feedback import ANONYMOUS_MAX_CHARS
    from spanqa.api.server import Settings, create_app

    keys = KeyStore(local.root / "anonymous-keys.json")
    secret, _ = keys.create("curator")
    auth = {"X-API-Key": secret}
    settings = Settings(anonymous_feedback=True, anonymous_feedback_burst=3,
                        anonymous_feedback_per_minute=0.01,  # no refill during the test
                        anonymous_feedback_max_rows=4, keys_file=keys.path,
                        uploads_dir=local.root / "uploads",
                        feedback_db=local.root / "anonymous.db")
    app = create_app(local.qa(), settings)
    with TestClient(app, client=("203.0.113.1", 5000)) as c:
        hit = c.post("/v1/search", json={"question": "capital of Freedonia?",
                                         "mode": "bm25"}).json()["hits"][0]
        start = hit["text"].index("Fredville")
        post = {"question": "What is the capital of Freedonia?", "answer": "Fredville",
                "passage_id": hit["passage_id"], "start": start, "end": start + 9,
                "correct": True}
        # Oversized fields: a 422 naming the field (and no part of the client's rate spent).
        for name in ("answer", "comment"):
            big = {**post, name: "x" * (ANONYMOUS_MAX_CHARS[name] + 1), "correct": False}
            r = c.post("/v1/feedback", json=big)
            assert r.status_code == 422, r.text
            assert r.json()["detail"][0]["loc"] == ["body", name]
            assert "without an API key" in r.json()["detail"][0]["msg"]
            assert c.post("/v1/feedback", json=big, headers=auth).status_code == 201
        # One client: its burst, then 429 with Retry-After.
        for i in range(3):
            r = c.post("/v1/feedback", json={**post, "question": f"Anonymous question {i}?"})
            assert r.status_code == 201 and r.json()["anonymous"] is True, r.text
        r = c.post("/v1/feedback", json={**post, "question": "One too many?"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "API key" in r.json()["detail"]
        r = c.post("/v1/feedback", json=post, headers=auth)  # a key is not rate-limited
        assert r.status_code == 201 and r.json()["anonymous"] is False
        wrong = c.post("/v1/feedback", json=post, headers={"X-API-Key": "guess"})
        assert wrong.status_code == 401  # a wrong key is no way to post anonymously
        # Another client has its own bucket, but the store keeps 4 anonymous rows at most.
        other = TestClient(app, client=("203.0.113.2", 5000))
        assert other.post("/v1/feedback", json={**post, "question": "Fourth?"}
                          ).status_code == 201
        full = other.post("/v1/feedback", json={**post, "question": "Fifth?"})
        assert full.status_code == 507 and "at most 4" in full.json()["detail"]

        assert export_questions(c.get("/v1/feedback/export", headers=auth)) == [post["question"]]
        assert export_questions(c.get("/v1/feedback/export", headers=auth,
                                      params={"include_anonymous": True})) == [
            "Anonymous question 0?", "Anonymous question 1?", "Anonymous question 2?",
            post["question"], "Fourth?"]
        assert c.get("/v1/feedback/export", params={"include_anonymous": True}
                     ).status_code == 401
        assert c.get("/v1/stats").json()["feedback"] == {"total": 7, "correct": 5,
                                                         "anonymous": 4}
    with contextlib.closing(sqlite3.connect(settings.feedback_db)) as db:
        marks = dict(db.execute("select question, key_name from feedback where correct = 1"))
    assert marks == {"Anonymous question 0?": None, "Anonymous question 1?": None,
                     "Anonymous question 2?": None, post["question"]: "curator",
                     "Fourth?": None}


def test_a_feedback_store_from_before_keys_is_migrated(tmp_path):
    import sqlite3

    from spanqa.api.feedback import FeedbackStore

    path = tmp_path / "old-feedback.db"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute('create table feedback (id integer primary key, created text, question text '
                   'not null, answer text not null, passage_id text not null, document_id '
                   'text, title text, path text, context text not null, start integer, '
                   '"end" integer, correct integer, comment text, request_id text, '
                   'generation text)')
        db.execute('insert into feedback (created, question, answer, passage_id, title, path, '
                   'context, start, "end", correct) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                   ("2025-01-01T00:00:00+00:00", "Old question?", "Fredville", "p1",
                    "Freedonia", "/old/freedonia.md", "The capital is Fredville.", 15, 24, 1))
    store = FeedbackStore(path)
    try:
        # Stored before keys were recorded: origin unknown, so counted as anonymous.
        assert store.counts() == {"total": 1, "correct": 1, "anonymous": 1}
        assert store.export_squad()["data"] == []
        old = store.export_squad(include_anonymous=True)["data"]
        assert old[0]["paragraphs"][0]["qas"][0]["question"] == "Old question?"
        store.add({"question": "New question?", "answer": "Fredville", "passage_id": "p1",
                   "title": "Freedonia", "context": "The capital is Fredville.", "start": 15,
                   "end": 24, "correct": True, "key_name": "ops"}, max_anonymous=1)
        new = store.export_squad()["data"][0]["paragraphs"][0]["qas"]
        assert [q["question"] for q in new] == ["New question?"]
    finally:
        store.close()
    FeedbackStore(path).close()  # migrated once; opening it again changes nothing


def test_path_view_maps_server_paths_both_ways():
    from spanqa.api.paths import PathView, collection_root

    uploads = Path("/srv/data/uploads")
    root = collection_root(["/srv/docs/a/x.txt", "/srv/docs/b/y.md",
                            "/srv/data/uploads/u1/z.txt"], uploads)
    assert root == Path("/srv/docs")
    assert collection_root(["/srv/docs/x.txt"], uploads) == Path("/srv/docs")
    assert collection_root(["/a.txt", "/srv/b.txt"], uploads) is None  # only "/" in common
    assert collection_root(["/srv/data/uploads/u1/z.txt"], uploads) is None
    view = PathView(uploads, root)
    assert view.public("/srv/docs/a/x.txt") == "a/x.txt"
    assert view.public("/srv/data/uploads/u1/z.txt") == "uploads/u1/z.txt"
    assert view.public("/opt/models/reader") == "reader"  # outside both: its name
    assert view.public("minilm") == "minilm"
    scrubbed = view.scrub({"error": "FileNotFoundError: No such file: "
                                    "'/srv/data/uploads/u1/z.txt'", "count": 3,
                           "message": ["see https://example.org/a/b and /opt/a/b.txt"]})
    assert scrubbed == {"error": "FileNotFoundError: No such file: 'uploads/u1/z.txt'",
                        "count": 3, "message": ["see https://example.org/a/b and b.txt"]}
    assert view.server_prefix("a/", keyed=False) == "/srv/docs/a"
    assert view.server_prefix("uploads/u1", keyed=False) == "/srv/data/uploads/u1"
    assert view.server_prefix("/etc", keyed=True) == "/etc"
    for prefix in ("/etc", "~root", "a/../../etc"):
        with pytest.raises(ValueError):
            view.server_prefix(prefix, keyed=prefix == "a/../../etc")
    with pytest.raises(ValueError, match="no common folder"):
        PathView(uploads, None).server_prefix("a/", keyed=True)


def test_the_rate_limiter_refills_and_forgets():
    from spanqa.api.ratelimit import ClientRateLimiter

    now = [0.0]
    limiter = ClientRateLimiter(per_minute=60, burst=2, max_clients=2, clock=lambda: now[0])
    assert limiter.take("a") == limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(1.0)  # one token a second
    assert limiter.take("b") == 0.0  # its own bucket
    now[0] = 1.0
    assert limiter.take("a") == 0.0 and limiter.take("a") == pytest.approx(1.0)
    limiter.take("c")  # three clients, room for two: b, the least recent, is forgotten
    assert limiter.take("b") == limiter.take("b") == 0.0  # a full bucket again
    # IPv6 clients by /64 (one network's share), IPv4-mapped ones as the IPv4 address.
    grouped = ClientRateLimiter(per_minute=0.01, burst=1, clock=lambda: now[0])
    assert grouped.take("2001:db8:0:1::1") == 0.0
    assert grouped.take("2001:db8:0:1:ffff:ffff:ffff:ffff") > 0
    assert grouped.take("2001:db8:0:2::1") == 0.0
    assert grouped.take("::ffff:192.0.2.1") == 0.0 and grouped.take("192.0.2.1") > 0
    assert grouped.take("192.0.2.2") == 0.0
    with pytest.raises(ValueError):
        ClientRateLimiter(per_minute=0, burst=1)


def test_serve_flags_reach_the_settings(env):
    from spanqa.api.cli import build_parser
    from spanqa.api.serve_cli import _prepare

    base = ["serve", "--index", str(env.index), "--reader", str(env.reader),
            "--keys", str(env.root / "flags-keys.json")]
    _, settings = _prepare(build_parser().parse_args(base))
    assert settings.anonymous_feedback is False  # feedback needs a key unless allowed
    assert settings.api_docs is False  # FastAPI's docs load from a CDN: off unless asked
    _, settings = _prepare(build_parser().parse_args(
        [*base, "--anonymous-feedback", "--anonymous-feedback-per-minute", "2",
         "--anonymous-feedback-max-rows", "7", "--api-docs"]))
    assert settings.anonymous_feedback is True
    assert settings.anonymous_feedback_per_minute == 2.0
    assert settings.anonymous_feedback_max_rows == 7
    assert settings.api_docs is True


def test_serve_believes_forwarded_headers_only_from_trusted_proxies():
    from spanqa.api.cli import build_parser
    from spanqa.api.serve_cli import uvicorn_options

    options = uvicorn_options(build_parser().parse_args(["serve"]))
    assert options["proxy_headers"] is False  # uvicorn's default would trust 127.0.0.1
    options = uvicorn_options(build_parser().parse_args(
        ["serve", "--trusted-proxy", "10.0.0.5", "--trusted-proxy", "fd00::/8"]))
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == "10.0.0.5,fd00::/8"


def test_new_keys_never_read_as_command_line_options(monkeypatch):
    """token_urlsafe starts with "-" one time in 64; argparse would take such a key for a flag."""
    import secrets

    from spanqa.api import auth

    drawn = iter(["-starts-with-a-dash", "fine-key"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(drawn))
    assert auth.new_secret() == "fine-key"
