"""HTTP benchmark: `spanqa serve` under load, 1 client against 8, then asks mixed with uploads.

    python bench/http_load.py                        # 30 s per phase, mixed test 60 s (~7 min)
    python bench/http_load.py --seconds 5            # smoke run (~1 min plus server start)

The server runs as a subprocess on 127.0.0.1 over a copy of the retrieval benchmark's index
(data/bench/retrieval-index; the uploads go into the copy, never into the cache), reading
with the reader benchmark's same-wall-time checkpoint (data/bench/budget-v1.1).

Phase A, per retrieval depth (5, 10, 20): `--clients 1` (sequential) then 8 concurrent
clients, each asking dev-v1.1 questions (POST /v1/ask) back to back for `--seconds`:
questions/s, the ratio concurrent/sequential, p50/p95 latency, errors, and the CPU the server
process (with its children) used, in cores and as a share of the machine's cores; the whole
machine's CPU use is reported beside it (anything else running shows there). The CPU
ceiling is the ratio the concurrent clients would reach if the server had every core at
its concurrent CPU cost per question (`cpu_ceiling`); the measured ratio over it is the
server's CPU share. With
`--rounds N` the two phases alternate N times and medians are reported.

Phase B (mixed): 8 clients ask for `--mixed-seconds` while a ninth uploads a small made-up
.txt document (POST /v1/documents, with an X-API-Key) every `--upload-every` seconds. Then
every upload's job must finish `done` and its document must be listed by GET /v1/documents
(else it counts as lost), and no response may be a 5xx; POST /v1/search with a question
about each upload shows whether the live index finds it.
Writes bench/results/http.json and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

try:
    import psutil
except ImportError:  # /proc/<pid>/stat is read instead
    psutil = None

REPO = Path(__file__).resolve().parents[1]
SQUAD = Path(os.environ.get("SPANQA_SQUAD_DIR", REPO.parent / "shared" / "squad"))
DEFAULT_INDEX = REPO / "data" / "bench" / "retrieval-index"
DEFAULT_READER = REPO / "data" / "bench" / "budget-v1.1" / "best"
STARTUP_S = 300  # loading the embedder and the reader on a busy 2-core machine
JOB_WAIT_S = 300  # for the last uploads' jobs to finish after the mixed phase
REQUEST_TIMEOUT_S = 120


# ----------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dev_questions(seed: int) -> list[str]:
    data = json.loads((SQUAD / "dev-v1.1.json").read_text())["data"]
    questions = [qa["question"] for article in data for paragraph in article["paragraphs"]
                 for qa in paragraph["qas"]]
    random.Random(seed).shuffle(questions)
    return questions


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100  # linear interpolation, as numpy's default
    lo = int(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


class CpuMeter:
    """CPU seconds of a process tree and of the whole machine between start() and stop()."""

    def __init__(self, pid: int):
        self.pid = pid
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _process_seconds(self) -> float:
        if psutil is not None:
            try:
                root = psutil.Process(self.pid)
                total = 0.0
                for p in [root, *root.children(recursive=True)]:
                    try:
                        t = p.cpu_times()
                        total += t.user + t.system
                        if p is root:  # children already waited for
                            total += t.children_user + t.children_system
                    except psutil.NoSuchProcess:
                        pass
                return total
            except psutil.NoSuchProcess:
                return 0.0
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / self.ticks  # utime stime cutime cstime

    @staticmethod
    def _machine_busy_seconds() -> float:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(x) for x in parts]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        self.t0, self.p0 = time.perf_counter(), self._process_seconds()
        self.m0 = self._machine_busy_seconds()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        cores = os.cpu_count() or 1
        server = (self._process_seconds() - self.p0) / wall
        machine = (self._machine_busy_seconds() - self.m0) / wall
        return {"server_cores": server, "server_share": 100 * server / cores,
                "machine_cores": machine, "machine_share": 100 * machine / cores,
                "cpu_count": cores}


def reader_batches(url: str) -> tuple[float, float]:
    """(questions, reader passes) so far, from the server's Prometheus metrics."""
    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return 0.0, 0.0
    found = dict(re.findall(r"^spanqa_reader_batch_size_(sum|count) (\S+)$", text, re.M))
    return float(found.get("sum", 0)), float(found.get("count", 0))


# ----------------------------------------------------------------------------- server


class Server:
    def __init__(self, index: Path, reader: Path, keys: Path, retrieval_k: int, log: Path,
                 port: int = 0, read_all: bool = False, reader_backend: str = "auto",
                 max_batch: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.out = open(log, "w")  # noqa: SIM115 (closed in stop())
        command = [sys.executable, "-m", "spanqa.api.cli", "serve", "--index", str(index),
                   "--reader", str(reader), "--host", "127.0.0.1", "--port", str(self.port),
                   "--retrieval-k", str(retrieval_k), "--keys", str(keys),
                   "--reader-backend", reader_backend]
        command += ["--read-all"] if read_all else []
        command += ["--max-batch", str(max_batch)] if max_batch else []
        self.process = subprocess.Popen(
            command, cwd=REPO, stdout=self.out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})

    def wait_healthy(self, timeout: float = STARTUP_S) -> float:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited ({self.process.returncode}):\n"
                                 + self.log.read_text()[-3000:])
            try:
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"the server was not healthy after {timeout:.0f} s:\n"
                         + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.out.close()


def create_key(keys: Path) -> str:
    """A fresh API key from `python -m api.cli keys create` (printed alone on stdout)."""
    done = subprocess.run(
        [sys.executable, "-m", "spanqa.api.cli", "keys", "create", "--name", "bench", "--keys",
         str(keys)], cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = done.stdout.strip().splitlines()
    if not lines or len(lines[0].strip()) < 20:
        raise SystemExit(f"no key in the output of `keys create`:\n{done.stdout}{done.stderr}")
    return lines[0].strip()


# ----------------------------------------------------------------------------- load


class Load:
    """Clients asking questions back to back until a deadline (and optional uploads)."""

    def __init__(self, url: str, questions: list[str], depth: int, clients: int,
                 seconds: float):
        self.url, self.depth, self.clients, self.seconds = url, depth, clients, seconds
        self._questions = itertools.cycle(questions)
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors: list[str] = []

    def _next_question(self) -> str:
        with self._lock:
            return next(self._questions)

    def _count(self, status: str) -> None:
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def _client(self, deadline: float) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
            while time.perf_counter() < deadline:
                body = {"question": self._next_question(), "top_k": 1,
                        "retrieval_k": self.depth}
                t = time.perf_counter()
                try:
                    response = client.post("/v1/ask", json=body)
                except httpx.HTTPError as e:
                    self._count("error")
                    with self._lock:
                        self.errors.append(f"{type(e).__name__}: {e}")
                    continue
                elapsed = time.perf_counter() - t
                self._count(str(response.status_code))
                if response.status_code == 200:
                    with self._lock:
                        self.latencies.append(elapsed)
                elif len(self.errors) < 20:
                    with self._lock:
                        self.errors.append(f"{response.status_code}: {response.text[:200]}")

    def run(self, meter: CpuMeter) -> dict:
        questions0, passes0 = reader_batches(self.url)
        began = time.perf_counter()
        deadline = began + self.seconds
        threads = [threading.Thread(target=self._client, args=(deadline,), daemon=True)
                   for _ in range(self.clients)]
        meter.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - began  # until the last request in flight came back
        cpu = meter.stop()
        questions1, passes1 = reader_batches(self.url)
        ok = len(self.latencies)
        failed = sum(n for s, n in self.statuses.items() if s != "200")
        return {
            "clients": self.clients, "depth": self.depth, "seconds": wall,
            "answered": ok, "questions_per_s": ok / wall,
            "p50_ms": 1000 * (percentile(self.latencies, 50) or 0.0),
            "p95_ms": 1000 * (percentile(self.latencies, 95) or 0.0),
            "errors": failed, "statuses": self.statuses,
            "server_5xx": sum(n for s, n in self.statuses.items() if s.startswith("5")),
            "error_samples": self.errors[:5], **cpu,
            "mean_reader_batch": ((questions1 - questions0) / (passes1 - passes0)
                                  if passes1 > passes0 else None),
        }


def phase_throughput(server: Server, questions: list[str], args) -> dict:
    out: dict = {}
    for depth in args.depth_list:
        runs: dict[str, list[dict]] = {"sequential": [], "concurrent": []}
        for _ in range(args.rounds):
            for name, clients in (("sequential", 1), ("concurrent", args.clients)):
                load = Load(server.url, questions, depth, clients, args.seconds)
                result = load.run(CpuMeter(server.process.pid))
                runs[name].append(result)
                print(f"depth {depth:3d} {name:<10} {result['questions_per_s']:6.2f} q/s  "
                      f"p50 {result['p50_ms']:7.0f} ms  p95 {result['p95_ms']:7.0f} ms  "
                      f"errors {result['errors']}  server CPU "
                      f"{result['server_cores']:.2f} cores  reader batch "
                      f"{result['mean_reader_batch'] or 0:.1f}", flush=True)
        summary = {name: median_run(rs) for name, rs in runs.items()}
        summary["ratio"] = (summary["concurrent"]["questions_per_s"]
                            / max(summary["sequential"]["questions_per_s"], 1e-9))
        summary.update(cpu_ceiling(summary, os.cpu_count() or 1))
        summary["runs"] = runs
        out[str(depth)] = summary
    return out


def cpu_ceiling(summary: dict, cores: int) -> dict:
    """The highest ratio cross-request batching could show at the measured cost.

    The server's CPU time per question under load (its cores busy / questions per second)
    bounds the throughput: with every core of the machine its own (the clients run on the
    same machine, so it never quite has them), it could answer at most `cores / seconds
    per question`. Divided by the sequential rate, that is the ratio the concurrent
    clients could reach; the measured ratio over it is the server's share of the CPU.
    """
    concurrent, sequential = summary["concurrent"], summary["sequential"]
    per_question = concurrent["server_cores"] / max(concurrent["questions_per_s"], 1e-9)
    ceiling = cores / max(per_question, 1e-9) / max(sequential["questions_per_s"], 1e-9)
    return {"cpu_seconds_per_question": per_question, "ceiling_ratio": ceiling}


def median_run(runs: list[dict]) -> dict:
    keys = ("questions_per_s", "p50_ms", "p95_ms", "server_cores", "server_share",
            "machine_cores", "machine_share")
    batches = [r["mean_reader_batch"] for r in runs if r["mean_reader_batch"] is not None]
    return {**{k: statistics.median(r[k] for r in runs) for k in keys},
            "mean_reader_batch": statistics.median(batches) if batches else None,
            "errors": sum(r["errors"] for r in runs),
            "server_5xx": sum(r["server_5xx"] for r in runs),
            "answered": sum(r["answered"] for r in runs), "clients": runs[0]["clients"]}


# ----------------------------------------------------------------------------- mixed


SYLLABLES = ("ka", "lo", "mi", "ra", "ve", "zu", "tor", "bel", "nax", "qui", "dro", "fen",
             "sal", "pim", "gor", "yth")


def made_up_name(rng: random.Random, syllables: int = 3) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()


class Uploader:
    """Its own client: uploads a small, made-up .txt document every `period` seconds."""

    def __init__(self, url: str, key: str, folder: Path, period: float, seed: int):
        self.url, self.key, self.folder, self.period = url, key, folder, period
        self.rng = random.Random(seed)
        self.uploads: list[dict] = []
        self.statuses: dict[str, int] = {}

    def run(self, deadline: float) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
            next_at = time.perf_counter()
            while next_at < deadline:
                time.sleep(max(0.0, next_at - time.perf_counter()))
                self.upload(client, len(self.uploads) + 1)
                next_at += self.period

    def upload(self, client: httpx.Client, n: int) -> None:
        name = f"bench-upload-{n:04d}.txt"
        year = str(1700 + n)
        place = f"{made_up_name(self.rng)}{n}"  # unique words: the question finds this file
        text = (f"The {place} observatory was opened in {year} on the shore of Lake "
                f"{made_up_name(self.rng)}. Its first director was "
                f"{made_up_name(self.rng, 2)} {made_up_name(self.rng)}, who also built its "
                "largest telescope.\n")
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        record: dict = {"name": name, "year": year, "place": place}
        t = time.perf_counter()
        try:
            with path.open("rb") as f:
                response = client.post("/v1/documents", headers={"X-API-Key": self.key},
                                       files={"files": (name, f, "text/plain")})
            record.update(status=response.status_code, seconds=time.perf_counter() - t)
            try:
                record["response"] = response.json()
            except ValueError:
                record["response"] = response.text[:300]
        except httpx.HTTPError as e:
            record.update(status="error", error=f"{type(e).__name__}: {e}")
        self.uploads.append(record)
        self.statuses[str(record["status"])] = self.statuses.get(str(record["status"]), 0) + 1


def job_url(response: object) -> str | None:
    """Where the upload's job can be polled (the server's status_url, else /v1/jobs/<id>)."""
    if not isinstance(response, dict):
        return None
    if isinstance(response.get("status_url"), str):
        return response["status_url"]
    return f"/v1/jobs/{response['job_id']}" if response.get("job_id") else None


def wait_jobs(url: str, uploads: list[dict]) -> None:
    deadline = time.monotonic() + JOB_WAIT_S
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        for u in uploads:
            where = job_url(u.get("response"))
            if not where:
                u["job_status"] = "no job in the response"
                continue
            while True:
                response = client.get(where)
                if response.status_code >= 500:
                    u.setdefault("poll_5xx", 0)
                    u["poll_5xx"] += 1
                data = response.json() if response.status_code == 200 else {}
                status = data.get("status") or data.get("state")
                if status in ("done", "failed", "error") or time.monotonic() > deadline:
                    u["job_status"] = status or f"HTTP {response.status_code}"
                    u["job"] = data
                    break
                time.sleep(0.5)


def listed_paths(url: str, key: str) -> list[str]:
    """Every document path GET /v1/documents lists (page by page)."""
    paths: list[str] = []
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S,
                      headers={"X-API-Key": key}) as client:
        offset = 0
        while True:
            response = client.get("/v1/documents", params={"limit": 1000, "offset": offset})
            response.raise_for_status()
            documents = response.json()["documents"]
            paths += [d["path"] for d in documents]
            offset += len(documents)
            if not documents or offset >= response.json()["total"]:
                return paths


def is_listed(upload: dict, paths: list[str]) -> bool:
    """The upload's file, in its own upload folder, is one of the listed documents."""
    response = upload.get("response")
    if not isinstance(response, dict) or not response.get("files"):
        return False
    suffix = f"{response.get('upload_id', '')}/{response['files'][0]}"
    return any(p.replace("\\", "/").endswith(suffix) for p in paths)


def phase_mixed(server: Server, questions: list[str], key: str, args, work: Path) -> dict:
    folder = work / "to-upload"  # the server keeps its own copies in work/uploads
    folder.mkdir()
    uploader = Uploader(server.url, key, folder, args.upload_every, args.seed)
    load = Load(server.url, questions, args.mixed_depth, args.clients, args.mixed_seconds)
    thread = threading.Thread(target=uploader.run,
                              args=(time.perf_counter() + args.mixed_seconds,), daemon=True)
    thread.start()
    result = load.run(CpuMeter(server.process.pid))
    thread.join()
    uploads = uploader.uploads
    began = time.perf_counter()
    wait_jobs(server.url, uploads)
    jobs_seconds = time.perf_counter() - began
    listed = listed_paths(server.url, key)
    searchable = 0
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as client:
        for u in uploads:
            u["listed"] = is_listed(u, listed)
            response = client.post("/v1/search", json={
                "question": f"When was the {u['place']} observatory opened?",
                "top_k": args.mixed_depth})
            hits = response.json().get("hits", []) if response.status_code == 200 else []
            u["searchable"] = is_listed(u, [h.get("path") or "" for h in hits])
            searchable += u["searchable"]
    upload_5xx = sum(n for s, n in uploader.statuses.items() if s.startswith("5"))
    poll_5xx = sum(u.get("poll_5xx", 0) for u in uploads)
    done = sum(u.get("job_status") == "done" for u in uploads)
    return {
        "asks": {k: v for k, v in result.items() if k != "error_samples"},
        "ask_error_samples": result["error_samples"],
        "uploads": len(uploads), "upload_statuses": uploader.statuses,
        "jobs_done": done, "listed": sum(u["listed"] for u in uploads),
        "retrieved_by_search": searchable,
        "lost_uploads": [u["name"] for u in uploads
                         if u.get("job_status") != "done" or not u["listed"]],
        "server_5xx": result["server_5xx"] + upload_5xx + poll_5xx,
        "jobs_wait_seconds": jobs_seconds,
        "upload_p50_ms": 1000 * (percentile(
            [u["seconds"] for u in uploads if "seconds" in u], 50) or 0.0),
        "upload_details": uploads,
    }


# ----------------------------------------------------------------------------- report


def table(results: dict) -> str:
    rows = ["depth  clients     q/s   ratio   p50 ms   p95 ms  errors  batch  server CPU "
            f"(cores, % of {results['cpu_count']})  machine CPU %"]
    for depth, s in results.get("throughput", {}).items():
        for name in ("sequential", "concurrent"):
            r = s[name]
            ratio = f"{s['ratio']:5.2f}x" if name == "concurrent" else "      "
            ceiling = (f"  CPU ceiling {s['ceiling_ratio']:.2f}x, "
                       f"{1000 * s['cpu_seconds_per_question']:.0f} CPU ms/question"
                       if name == "concurrent" and "ceiling_ratio" in s else "")
            rows.append(f"{depth:>5}  {r['clients']:7d}  {r['questions_per_s']:6.2f}  {ratio}"
                        f" {r['p50_ms']:8.0f} {r['p95_ms']:8.0f}  {r['errors']:6d}  "
                        f"{r['mean_reader_batch'] or 0:5.1f}  "
                        f"{r['server_cores']:5.2f} ({r['server_share']:5.1f}%)"
                        f"          {r['machine_share']:5.1f}{ceiling}")
    if "mixed" in results:
        m = results["mixed"]
        a = m["asks"]
        rows.append(
            f"mixed: {a['clients']} clients {a['seconds']:.0f} s at depth {a['depth']}: "
            f"{a['questions_per_s']:.2f} q/s, p50 {a['p50_ms']:.0f} ms, p95 "
            f"{a['p95_ms']:.0f} ms, ask errors {a['errors']}")
        rows.append(
            f"mixed: uploads {m['uploads']} (statuses {m['upload_statuses']}), jobs done "
            f"{m['jobs_done']}, listed {m['listed']}, found by /v1/search "
            f"{m['retrieved_by_search']}, lost {len(m['lost_uploads'])}, 5xx {m['server_5xx']}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", default=str(DEFAULT_INDEX),
                        help="index to serve (copied first: the uploads go into the copy)")
    parser.add_argument("--reader", default=str(DEFAULT_READER))
    parser.add_argument("--reader-backend", default="auto",
                        help="passed to `spanqa serve --reader-backend` (which checks it)")
    parser.add_argument("--seconds", type=float, default=30, help="length of each load phase")
    parser.add_argument("--mixed-seconds", type=float, default=None,
                        help="length of the mixed phase (default 2 x --seconds)")
    parser.add_argument("--upload-every", type=float, default=3.0,
                        help="seconds between two uploads in the mixed phase")
    parser.add_argument("--depths", default="5,10,20")
    parser.add_argument("--read-all", action="store_true",
                        help="serve with --read-all, so each depth is read in full")
    parser.add_argument("--mixed-depth", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=None,
                        help="passed to `spanqa serve --max-batch` (default: the server's)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate sequential and concurrent this many times (medians)")
    parser.add_argument("--phases", default="throughput,mixed")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    parser.add_argument("--output", default="http.json",
                        help="file name of the results, in --results")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()
    args.depth_list = [int(d) for d in args.depths.split(",")]
    args.mixed_seconds = args.mixed_seconds or 2 * args.seconds
    phases = args.phases.split(",")

    questions = dev_questions(args.seed)
    results: dict = {"config": {k: v for k, v in vars(args).items() if k != "depth_list"},
                     "cpu_count": os.cpu_count(), "psutil": psutil is not None}
    work = Path(tempfile.mkdtemp(prefix="spanqa-http-"))
    server = None
    try:
        index = work / "index"
        shutil.copytree(args.index, index,
                        ignore=shutil.ignore_patterns("writer.lock", ".tmp*"))
        keys = work / "keys.json"
        key = create_key(keys)
        server = Server(index, Path(args.reader), keys, max(args.depth_list),
                        work / "server.log", args.port, args.read_all, args.reader_backend,
                        args.max_batch)
        results["startup_seconds"] = server.wait_healthy()
        # Warm-up (not counted): the first asks load lazily and fill caches.
        with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as client:
            for q in questions[-3:]:
                response = client.post("/v1/ask", json={"question": q, "top_k": 1,
                                                        "retrieval_k": max(args.depth_list)})
                if response.status_code != 200:
                    raise SystemExit(f"POST /v1/ask answered {response.status_code}: "
                                     f"{response.text[:500]}")
        if "throughput" in phases:
            results["throughput"] = phase_throughput(server, questions, args)
        if "mixed" in phases:
            results["mixed"] = phase_mixed(server, questions, key, args, work)
        stats = httpx.get(server.url + "/v1/stats", headers={"X-API-Key": key}, timeout=30)
        if stats.status_code == 200:  # the whole run's batching and job counts
            results["server_stats"] = {k: stats.json().get(k) for k in ("batching", "jobs")}
    finally:
        if server is not None:
            server.stop()
            results["server_log_tail"] = server.log.read_text()[-2000:]
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    out = Path(args.results) / args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}" + (f"; work folder {work}" if args.keep else ""))
    mixed = results.get("mixed")
    if mixed and (mixed["lost_uploads"] or mixed["server_5xx"]):
        raise SystemExit(f"FAILED: {len(mixed['lost_uploads'])} lost upload(s), "
                         f"{mixed['server_5xx']} 5xx response(s)")


if __name__ == "__main__":
    main()
