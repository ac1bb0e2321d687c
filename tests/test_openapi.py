"""/openapi.json tells the truth: it is an OpenAPI 3 document, every operation describes
its JSON body field by field, and what each route really answers (successes and errors,
with and without an API key) validates against what the document says of it.

Bodies are validated with `jsonschema` when it is installed, else with the small validator
below (types, required, properties, additionalProperties, items, anyOf/oneOf/allOf, enum,
const, nullable); the document with `openapi-spec-validator` when installed, else with the
structural checks below. The last tests corrupt real bodies and expect the validators,
and the app's own response models, to refuse them.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

try:
    import jsonschema
except ImportError:  # not in the dev extra yet: the built-in validator below stands in
    jsonschema = None

try:
    import openapi_spec_validator
except ImportError:
    openapi_spec_validator = None

from spanqa.api.calibration import Calibration
from spanqa.api.jobs import STATUSES
from spanqa.index.layout import IndexDir
from spanqa.indexer.build import IndexConfig, update_index

DOCS = {
    "company/zephyr.txt": "The Zephyr company was founded in 1987 by Ada Marsh in Lyon. "
                          "It builds small wind turbines for farms.",
    "places/freedonia.md": "# Freedonia\n\nThe capital of Freedonia is Fredville. "
                           "Freedonia exports cheese and violins.",
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_JSON = 64 * 1024
MAX_UPLOAD = 256 * 1024


# ------------------------------------------------------------------------- the validators


def resolve(schema: dict, doc: dict) -> dict:
    """`schema` with its top-level `$ref` (into the document) followed."""
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    raise AssertionError(f"unknown JSON Schema type {kind!r}")


def builtin_errors(value: Any, schema: dict, doc: dict, where: str = "$") -> Iterator[str]:
    """Where `value` breaks `schema` (JSON Schema as OpenAPI 3.0 and 3.1 write it)."""
    schema = resolve(schema, doc)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            fits = sum(not list(builtin_errors(value, s, doc, where)) for s in schema[key])
            if fits == 0 or (key == "oneOf" and fits > 1):
                yield f"{where}: {value!r:.80} matches {fits} of its {key} schemas"
    for sub in schema.get("allOf", ()):
        yield from builtin_errors(value, sub, doc, where)
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: {value!r:.80} is not one of {schema['enum']}"
    if "const" in schema and value != schema["const"]:
        yield f"{where}: {value!r:.80} is not {schema['const']!r}"
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if schema.get("nullable"):
            kinds = [*kinds, "null"]
        if not any(_type_ok(value, kind) for kind in kinds):
            yield f"{where}: {value!r:.80} is not of type {' or '.join(kinds)}"
            return
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                yield f"{where}: required field {name!r} is missing"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                yield from builtin_errors(item, properties[name], doc, f"{where}.{name}")
            elif extra is False:
                yield f"{where}: field {name!r} is not in the schema"
            elif isinstance(extra, dict):
                yield from builtin_errors(item, extra, doc, f"{where}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from builtin_errors(item, schema["items"], doc, f"{where}[{i}]")


def jsonschema_errors(value: Any, schema: dict, doc: dict) -> list[str]:
    assert jsonschema is not None
    root = {**schema, "components": doc.get("components", {})}  # where the $refs point
    validator = jsonschema.Draft202012Validator(root)
    return [f"$.{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(value)]


VALIDATORS: dict[str, Callable[[Any, dict, dict], list[str]]] = {
    "builtin": lambda value, schema, doc: list(builtin_errors(value, schema, doc)),
}
if jsonschema is not None:
    VALIDATORS["jsonschema"] = jsonschema_errors


def body_errors(value: Any, schema: dict, doc: dict) -> list[str]:
    """What every available validator finds wrong (each must agree the body is fine)."""
    return [f"[{name}] {e}" for name, check in VALIDATORS.items()
            for e in check(value, schema, doc)]


def structure_errors(doc: dict) -> Iterator[str]:
    """What makes `doc` no OpenAPI 3 document: the checks openapi-spec-validator would
    make first, for when it is not installed."""
    if not re.fullmatch(r"3\.\d+\.\d+", str(doc.get("openapi", ""))):
        yield f"openapi version {doc.get('openapi')!r} is not 3.x.y"
    info = doc.get("info", {})
    for name in ("title", "version"):
        if not isinstance(info.get(name), str):
            yield f"info.{name} is missing"
    schemes = doc.get("components", {}).get("securitySchemes", {})
    seen_ids: set[str] = set()
    for path, item in doc.get("paths", {}).items():
        if not path.startswith("/"):
            yield f"path {path!r} does not start with /"
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            if method not in METHODS:
                yield f"{where}: not an HTTP method"
                continue
            if op.get("operationId") in seen_ids:
                yield f"{where}: operationId {op.get('operationId')!r} is used twice"
            seen_ids.add(op.get("operationId"))
            params = op.get("parameters", [])
            for p in params:
                if p.get("in") not in ("query", "header", "path", "cookie") or not p.get("name"):
                    yield f"{where}: parameter {p} lacks a name or a place"
                if "schema" not in p and "content" not in p:
                    yield f"{where}: parameter {p.get('name')} has no schema"
            path_params = {p["name"] for p in params if p.get("in") == "path" and p.get("required")}
            if path_params != templated:
                yield f"{where}: path parameters {path_params} != template {templated}"
            responses = op.get("responses")
            if not isinstance(responses, dict) or not responses:
                yield f"{where}: no responses"
                continue
            for status, response in responses.items():
                if not re.fullmatch(r"[1-5](\d\d|XX)|default", str(status)):
                    yield f"{where}: {status!r} is no status code"
                if not isinstance(response.get("description"), str):
                    yield f"{where} {status}: a response needs a description"
            for requirement in op.get("security", []):
                for name in requirement:
                    if name not in schemes:
                        yield f"{where}: security scheme {name!r} is not defined"
    yield from dangling_refs(doc, doc)


def dangling_refs(node: Any, doc: dict, where: str = "#") -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            try:
                resolve({"$ref": node["$ref"]}, doc)
            except (KeyError, AssertionError):
                yield f"{where}: $ref {node['$ref']} points nowhere"
        for key, value in node.items():
            yield from dangling_refs(value, doc, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from dangling_refs(value, doc, f"{where}/{i}")


def operations(doc: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def json_schema(response: dict) -> dict | None:
    return response.get("content", {}).get("application/json", {}).get("schema")


def undescribed(schema: dict, doc: dict, where: str, seen: set[str]) -> Iterator[str]:
    """Fields without a description, through nested objects, arrays and refs."""
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return
        seen.add(schema["$ref"])
    schema = resolve(schema, doc)
    for sub in (*schema.get("anyOf", ()), *schema.get("oneOf", ()), *schema.get("allOf", ())):
        yield from undescribed(sub, doc, where, seen)
    if isinstance(schema.get("items"), dict):
        yield from undescribed(schema["items"], doc, f"{where}[]", seen)
    for name, prop in schema.get("properties", {}).items():
        if not prop.get("description"):
            yield f"{where}.{name}"
        yield from undescribed(prop, doc, f"{where}.{name}", seen)


# ------------------------------------------------------------------------- the app


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_model) -> Iterator[SimpleNamespace]:
    """The app over a small index, in this process, behind FastAPI's TestClient (real
    HTTP requests through the whole ASGI stack: middleware, routes, response models)."""
    from fastapi.testclient import TestClient

    from spanqa.api.auth import KeyStore
    from spanqa.api.qa import QA
    from spanqa.api.server import Settings, create_app
    from spanqa.reader.reader import Reader
    from spanqa.retriever.search import Retriever
    from spanqa.runtime.embedder import Embedder

    root = tmp_path_factory.mktemp("openapi")
    for name, text in DOCS.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text, encoding="utf-8")
    embedder = Embedder("minilm")
    update_index(root / "index", add=[root / "docs"], embedder=embedder, progress=False,
                 config=IndexConfig(words=60, overlap=10))
    keys = KeyStore(root / "keys.json")
    secret, _ = keys.create("openapi-tests")
    qa = QA(Retriever(root / "index", embedder=embedder), Reader.from_pretrained(tiny_model),
            calibration=Calibration(threshold=0.0))  # random logits: keep every answer
    settings = Settings(keys_file=keys.path, uploads_dir=root / "uploads",
                        feedback_db=root / "feedback.db", anonymous_feedback=True,
                        anonymous_feedback_burst=2, anonymous_feedback_per_minute=0.01,
                        anonymous_feedback_max_rows=1, max_json_bytes=MAX_JSON,
                        max_upload_bytes=MAX_UPLOAD, lock_retry_max_s=0.2)
    built = create_app(qa, settings)
    with TestClient(built, raise_server_exceptions=False) as client:
        yield SimpleNamespace(client=client, app=built, qa=qa, index=root / "index",
                              auth={"X-API-Key": secret})


@pytest.fixture(scope="module")
def doc(app) -> dict:
    r = app.client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


class Exchanges:
    """The requests a test made, by operation: what the bodies are validated from."""

    def __init__(self, client):
        self.client = client
        self.seen: list[tuple[str, str, int, Any, str]] = []

    def __call__(self, method: str, template: str, *, path: dict | None = None,
                 expect: int, **kwargs: Any) -> Any:
        url = template.format(**(path or {}))
        r = self.client.request(method, url, **kwargs)
        assert r.status_code == expect, (method, url, r.status_code, r.text[:500])
        assert r.headers["content-type"].startswith("application/json"), r.headers
        body = r.json()
        self.seen.append((method.lower(), template, r.status_code, body, url))
        return body


def wait_job(call: Exchanges, job_id: str, **kwargs: Any) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = call("GET", "/v1/jobs/{job_id}", path={"job_id": job_id}, expect=200, **kwargs)
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def exercise(app: SimpleNamespace) -> Exchanges:
    """Every route, answering with each status it can reasonably be made to give."""
    call, auth = Exchanges(app.client), app.auth
    wrong = {"X-API-Key": "not-a-key"}
    question = {"question": "When was the Zephyr company founded?"}

    call("GET", "/v1/health", expect=200)
    call("GET", "/v1/health", expect=200, headers=auth)
    call("GET", "/v1/stats", expect=200)
    call("GET", "/v1/stats", expect=200, headers=auth)
    call("GET", "/v1/stats", expect=401, headers=wrong)

    answered = call("POST", "/v1/ask", expect=200, json=question)
    assert answered["answers"] and answered["passages"]
    call("POST", "/v1/ask", expect=200, headers=auth, json={**question, "mode": "bm25"})
    assert call("POST", "/v1/ask", expect=200, json={**question, "filters": {
        "title": "no such title"}})["handoff"]
    calibration = app.qa.calibration
    app.qa.calibration = replace(calibration, threshold=1.01)  # abstains: a best guess
    try:
        assert call("POST", "/v1/ask", expect=200, json=question)["best_guess"] is not None
    finally:
        app.qa.calibration = calibration
    call("POST", "/v1/ask", expect=422, json={"question": ""})
    call("POST", "/v1/ask", expect=422, json={**question, "filters": {"path_prefix": "/etc"}})
    call("POST", "/v1/ask", expect=413, json={"question": "x" * (MAX_JSON + 1)})
    call("POST", "/v1/ask", expect=401, headers=wrong, json=question)

    hits = call("POST", "/v1/search", expect=200, json=question)["hits"]
    call("POST", "/v1/search", expect=200, headers=auth, json={**question, "top_k": 1})
    call("POST", "/v1/search", expect=422, json={"question": "ok?", "top_k": 0})
    call("POST", "/v1/search", expect=401, headers=wrong, json=question)
    call("POST", "/v1/search", expect=413, json={"question": "x" * (MAX_JSON + 1)})

    call("GET", "/v1/documents", expect=200)
    call("GET", "/v1/documents", expect=200, headers=auth, params={"limit": 1, "offset": 1})
    call("GET", "/v1/documents", expect=422, params={"limit": 0})
    call("GET", "/v1/documents", expect=401, headers=wrong)

    files = [("files", ("quokka.txt", b"The Quokka Institute was founded in 2003.", "x")),
             ("files", ("empty.txt", b"", "text/plain"))]
    call("POST", "/v1/documents", expect=401, files=files)
    call("POST", "/v1/documents", expect=415, headers=auth,
         files=[("files", ("program.exe", b"MZ", "x"))])
    call("POST", "/v1/documents", expect=413, headers=auth,
         files=[("files", ("big.txt", b"x" * (MAX_UPLOAD + 1), "text/plain"))])
    call("POST", "/v1/documents", expect=422, headers=auth, data={"not_files": "1"})
    upload = call("POST", "/v1/documents", expect=202, headers=auth, files=files)
    job = wait_job(call, upload["job_id"])
    assert job["status"] == "done" and job["report"]["skipped"], job
    wait_job(call, upload["job_id"], headers=auth)
    call("GET", "/v1/jobs/{job_id}", path={"job_id": "nope"}, expect=404)
    call("GET", "/v1/jobs/{job_id}", path={"job_id": "nope"}, expect=401, headers=wrong)
    call("GET", "/v1/jobs", expect=200)
    call("GET", "/v1/jobs", expect=200, headers=auth, params={"limit": 1})
    call("GET", "/v1/jobs", expect=422, params={"limit": 0})

    listing = call("GET", "/v1/documents", expect=200, headers=auth)["documents"]
    quokka = next(d for d in listing if d["path"].endswith("quokka.txt"))
    document = {"document_id": quokka["id"]}
    call("DELETE", "/v1/documents/{document_id}", path=document, expect=401)
    call("DELETE", "/v1/documents/{document_id}", path={"document_id": "nope"}, expect=404,
         headers=auth)
    removal = call("DELETE", "/v1/documents/{document_id}", path=document, expect=202,
                   headers=auth)
    assert wait_job(call, removal["job_id"])["status"] == "done"

    # Cancelling: one job runs (waiting for the writer lock held here), one is queued.
    with IndexDir(app.index).writer():
        running = call("POST", "/v1/documents", expect=202, headers=auth, files=[
            ("files", ("okapi.txt", b"The Okapi Society meets on Tuesdays.", "x"))])["job_id"]
        deadline = time.monotonic() + 60
        while "waiting for index lock" not in call(
                "GET", "/v1/jobs/{job_id}", path={"job_id": running}, expect=200)["message"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        queued = call("POST", "/v1/documents", expect=202, headers=auth, files=[
            ("files", ("tapir.txt", b"The Tapir Guild meets on Fridays.", "x"))])["job_id"]
        cancelled = call("DELETE", "/v1/jobs/{job_id}", path={"job_id": queued}, expect=202,
                         headers=auth)
        assert cancelled["status"] == "cancelled", cancelled
        stopping = call("DELETE", "/v1/jobs/{job_id}", path={"job_id": running}, expect=202,
                        headers=auth)
        assert stopping["status"] == "running" and stopping["cancel_requested"], stopping
        assert wait_job(call, running)["status"] == "cancelled"
    call("DELETE", "/v1/jobs/{job_id}", path={"job_id": running}, expect=409, headers=auth)
    call("DELETE", "/v1/jobs/{job_id}", path={"job_id": "nope"}, expect=404, headers=auth)
    call("DELETE", "/v1/jobs/{job_id}", path={"job_id": "nope"}, expect=401)

    hit = hits[0]
    feedback = {"question": question["question"], "answer": hit["text"][:3],
                "passage_id": hit["passage_id"], "start": 0, "end": 3, "correct": True}
    assert call("POST", "/v1/feedback", expect=201, headers=auth, json=feedback)[
        "anonymous"] is False
    call("POST", "/v1/feedback", expect=404, headers=auth, json={**feedback, "passage_id": "x"})
    call("POST", "/v1/feedback", expect=422, headers=auth, json={**feedback, "answer": "zz"})
    call("POST", "/v1/feedback", expect=401, headers=wrong, json=feedback)
    call("POST", "/v1/feedback", expect=413, json={**feedback, "comment": "x" * MAX_JSON})
    # Anonymous: too long (a 422 listing the field), then one stored, then the row cap
    # (507), then the rate limit (429).
    call("POST", "/v1/feedback", expect=422, json={**feedback, "comment": "x" * 501})
    assert call("POST", "/v1/feedback", expect=201, json=feedback)["anonymous"] is True
    call("POST", "/v1/feedback", expect=507, json=feedback)
    call("POST", "/v1/feedback", expect=429, json=feedback)

    export = call("GET", "/v1/feedback/export", expect=200, headers=auth)
    assert export["data"][0]["paragraphs"][0]["qas"], export
    call("GET", "/v1/feedback/export", expect=200, headers=auth,
         params={"include_anonymous": "true"})
    call("GET", "/v1/feedback/export", expect=422, headers=auth,
         params={"include_anonymous": "maybe"})
    call("GET", "/v1/feedback/export", expect=401)
    call("GET", "/v1/stats", expect=200)  # now with jobs and feedback behind it
    return call


@pytest.fixture(scope="module")
def exchanges(app) -> Exchanges:
    return exercise(app)


# ------------------------------------------------------------------------- the document


def test_the_document_is_an_openapi_3_document(doc):
    if openapi_spec_validator is not None:
        validate = getattr(openapi_spec_validator, "validate", None) or \
            openapi_spec_validator.validate_spec
        validate(doc)
    problems = list(structure_errors(doc))  # also with the validator: it allows more
    assert not problems, "\n".join(problems)
    assert doc["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_every_operation_describes_its_json_body_field_by_field(doc):
    found = list(operations(doc))
    assert len(found) == 12, [(m, p) for p, m, _ in found]
    for path, method, op in found:
        where = f"{method.upper()} {path}"
        successes = {s: r for s, r in op["responses"].items() if str(s).startswith("2")}
        assert successes, f"{where}: no 2xx response"
        for status, response in op["responses"].items():
            schema = json_schema(response)
            assert schema is not None, f"{where} {status}: no JSON schema"
            resolved = resolve(schema, doc)
            assert resolved.get("type") == "object" and resolved.get("properties"), (
                f"{where} {status}: a body without properties: {resolved}")
            lacking = list(undescribed(schema, doc, f"{where} {status}", set()))
            assert not lacking, f"fields without a description: {lacking}"
    job_status = doc["components"]["schemas"]["Job"]["properties"]["status"]
    assert set(job_status["enum"]) == set(STATUSES)


def test_the_response_objects_are_closed_unless_the_index_writes_them(doc):
    """additionalProperties false everywhere, so that an undeclared field is an error;
    open only where the index's manifest may carry fields a newer indexer adds."""
    open_ = {name for name, schema in doc["components"]["schemas"].items()
             if schema.get("type") == "object" and schema.get("additionalProperties") is not False
             and not name.endswith("In") and not name.startswith("Body_")}
    assert open_ == {"IndexStats", "IndexConfigStats"}, open_


# ------------------------------------------------------------------------- the answers


def test_every_answer_validates_against_the_document(doc, exchanges):
    checked: set[tuple[str, str]] = set()
    problems = []
    for method, template, status, body, url in exchanges.seen:
        op = doc["paths"][template][method]
        response = op["responses"].get(str(status))
        if response is None:
            problems.append(f"{method.upper()} {url}: status {status} is not documented")
            continue
        errors = body_errors(body, json_schema(response), doc)
        problems += [f"{method.upper()} {url} -> {status}: {e}" for e in errors]
        if 200 <= status < 300:
            checked.add((template, method))
    assert not problems, "\n".join(problems)
    unexercised = {(p, m) for p, m, _ in operations(doc)} - checked
    assert not unexercised, f"operations never answered with a 2xx here: {unexercised}"


def test_the_validators_refuse_corrupted_bodies(doc, exchanges):
    def body_of(template: str, method: str, status: int) -> Any:
        return next(copy.deepcopy(b) for m, t, s, b, _ in exchanges.seen
                    if (t, m, s) == (template, method, status))

    def schema_of(template: str, method: str, status: int) -> dict:
        return json_schema(doc["paths"][template][method]["responses"][str(status)])

    ask = body_of("/v1/ask", "post", 200)
    ask_schema = schema_of("/v1/ask", "post", 200)
    job_schema = schema_of("/v1/jobs/{job_id}", "get", 200)
    job = next(copy.deepcopy(b) for m, t, s, b, _ in exchanges.seen
               if t == "/v1/jobs/{job_id}" and s == 200 and b["report"] is not None)
    cases: list[tuple[str, Callable[[Any], None], Any, dict]] = [
        ("an undeclared field", lambda b: b.update(surprise=1), ask, ask_schema),
        ("an undeclared nested field", lambda b: b["answers"][0]["context"].update(x=1),
         ask, ask_schema),
        ("a missing required field", lambda b: b.pop("handoff"), ask, ask_schema),
        ("a missing nested field", lambda b: b["passages"][0].pop("passage_id"), ask,
         ask_schema),
        ("a string for an integer", lambda b: b.update(passages_read="2"), ask, ask_schema),
        ("a boolean for an integer", lambda b: b["answers"][0].update(start=True), ask,
         ask_schema),
        ("a null that may not be", lambda b: b.update(question=None), ask, ask_schema),
        ("an object for a list", lambda b: b.update(answers={}), ask, ask_schema),
        ("a wrong type in anyOf", lambda b: b.update(best_guess="none"), ask, ask_schema),
        ("a wrong list item", lambda b: b["passages"].append(3), ask, ask_schema),
        ("a status outside the enum", lambda b: b.update(status="lost"), job, job_schema),
        ("a wrong type in a nested list", lambda b: b["report"]["skipped"][0].update(
            reason=5), job, job_schema),
    ]
    for name, validate in VALIDATORS.items():
        assert not validate(ask, ask_schema, doc), name
        assert not validate(job, job_schema, doc), name
        for what, corrupt, original, schema in cases:
            body = copy.deepcopy(original)
            corrupt(body)
            assert validate(body, schema, doc), f"{name} took a body with {what}"


def test_a_route_returning_an_undeclared_field_fails_instead_of_hiding_it(app, exchanges,
                                                                          monkeypatch):
    """The response models are closed: a field a route returns and its model does not
    declare is an error (a 500 here), never silently dropped or passed on."""
    jobs = app.app.state.jobs
    real = jobs.recent(1)
    assert real, "the exchanges left no job behind"
    monkeypatch.setattr(jobs, "get", lambda job_id: {**real[0], "surprise": True})
    r = app.client.get(f"/v1/jobs/{real[0]['id']}", headers=app.auth)
    assert r.status_code == 500 and "request_id" in r.json(), r.text
    monkeypatch.undo()
    r = app.client.get(f"/v1/jobs/{real[0]['id']}", headers=app.auth)
    assert r.status_code == 200 and "surprise" not in r.json()


def test_the_web_page_and_metrics_stay_outside_the_document(app, doc):
    assert "/" not in doc["paths"] and "/metrics" not in doc["paths"]
    assert app.client.get("/").headers["content-type"].startswith("text/html")
    metrics = app.client.get("/metrics")
    assert metrics.status_code == 200 and "spanqa_http_requests_total" in metrics.text
