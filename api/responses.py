"""The response bodies of the HTTP API as pydantic models: what /openapi.json tells clients
of each response, field by field, and what FastAPI checks each response against.

The models are closed (`extra="forbid"`): a field that a route returns and no model here
declares makes that request fail in the tests, instead of reaching clients undocumented.
Where the pipeline computes a float (scores, confidences) it may be null: responses pass
through `core.strictjson.finite`, which turns NaN and infinities into null, since strict
JSON has neither. The request bodies are in api/schemas.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]  # jobs.STATUSES

REQUEST_ID = "the request's id, as in the X-Request-ID response header and the server log"
GENERATION = "the index generation that answered (`gen-000001`, ...)"
PATH = ("the source file's path: in full for callers with an API key, else relative to the "
        "collection (`uploads/<upload id>/<file>` for uploads)")
NOT_FINITE = "; null where it is not a finite number"


class Closed(BaseModel):
    """A response object: only the fields declared (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """An object the index writes: the fields known today, and whatever a newer index adds."""

    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------ errors


class ErrorResponse(Closed):
    detail: str | list[dict[str, Any]] = Field(
        description="what was wrong: a message, or (422) one entry per invalid field, with "
                    "its location `loc`, a message `msg` and an error `type`")
    request_id: str = Field(description=REQUEST_ID)


ERRORS = {
    401: "no valid API key where the route needs one; `detail` says how to get one",
    404: "no such thing (the message names it)",
    409: "the job has finished already, so it cannot be cancelled",
    413: "the request body is over the server's limit",
    415: "a file of a type the indexer does not read",
    422: "invalid input: `detail` lists each invalid field, or says what is wrong",
    429: "too much anonymous feedback from this client: wait for the Retry-After seconds",
    503: "too many questions are waiting for the model: retry after the Retry-After seconds",
    507: "the server holds as much anonymous feedback as it keeps",
}


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "integer"}}}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that can answer these error statuses."""
    return {code: {"model": ErrorResponse, "description": ERRORS[code],
                   **({"headers": RETRY_AFTER} if code in (429, 503) else {})}
            for code in codes}


# ------------------------------------------------------------------ questions


class Hit(Closed):
    """A retrieved passage."""

    passage_id: str = Field(description="the passage's id (stable across rebuilds)")
    document_id: str = Field(description="the id of the document it is part of")
    title: str = Field(description="its document's title")
    path: str = Field(description=PATH)
    page: int | None = Field(description="the 1-based PDF page it is on; null for other files")
    order: int = Field(description="its position within its document, from 0")
    start: int = Field(description="where it starts in its document's text (characters)")
    end: int = Field(description="where it ends in its document's text (characters)")
    text: str = Field(description="the passage text; answer offsets point into it")
    score: float | None = Field(description="the retrieval score (higher is better; its scale "
                                            "depends on the mode)" + NOT_FINITE)
    bm25_rank: int | None = Field(description="the 1-based rank BM25 gave it; null when not in "
                                              "BM25's list")
    dense_rank: int | None = Field(description="the 1-based rank dense retrieval gave it; null "
                                               "when not in its list")


class AnswerContext(Closed):
    """A window of the passage around the answer."""

    text: str = Field(description="up to 150 characters each side of the answer, cut at "
                                  "spaces, with … where it was cut")
    answer_start: int = Field(description="where the answer starts in `text`")
    answer_end: int = Field(description="where the answer ends in `text`")
    marked: str = Field(description="`text` with the answer between ** marks")


class Answer(Closed):
    """An answer: an exact span of a passage, with what is needed to cite its source."""

    text: str = Field(description="the answer, exactly as it stands in the passage")
    confidence: float | None = Field(description="the calibrated probability that it is right "
                                                 "(0 to 1)" + NOT_FINITE)
    score: float | None = Field(description="the ranking score: the reader's start+end logit, "
                                            "with the retrieval term when calibrated so"
                                            + NOT_FINITE)
    passage_id: str = Field(description="the passage it was read from")
    document_id: str = Field(description="that passage's document")
    title: str = Field(description="the document's title")
    path: str = Field(description=PATH)
    page: int | None = Field(description="the 1-based PDF page; null for other files")
    start: int = Field(description="where it starts in the passage text")
    end: int = Field(description="where it ends in the passage text")
    document_start: int = Field(description="where it starts in the document's text")
    document_end: int = Field(description="where it ends in the document's text")
    context: AnswerContext = Field(description="the passage around the answer")
    passage_rank: int = Field(description="the 1-based retrieval rank of its passage")
    occurrences: int = Field(description="how many passages proposed the same answer")


class Timing(Closed):
    """Where the time of a question went."""

    retrieve: float = Field(description="milliseconds spent retrieving passages")
    read: float = Field(description="milliseconds of the reader pass this question was in")
    total: float = Field(description="milliseconds from retrieval to ranked answers")
    batch_size: int = Field(description="questions read together in that reader pass")


class AskResponse(Closed):
    question: str = Field(description="the question, stripped of surrounding spaces")
    answers: list[Answer] = Field(description="the confident answers, best first (at most "
                                              "`top_k`); empty with `handoff`")
    handoff: bool = Field(description="true when no answer was confident enough: pass the "
                                      "question to a person")
    passages: list[Hit] = Field(description="the top retrieved passages, best first")
    timing_ms: Timing = Field(description="how long each stage took")
    calibrated: bool = Field(description="whether confidences come from a calibration fitted "
                                         "on data (else from the defaults)")
    passages_read: int = Field(description="how many passages the reader read")
    best_guess: Answer | None = Field(description="with `handoff`: the best span found, below "
                                                  "the threshold (a lead, not an answer); "
                                                  "else null")
    request_id: str = Field(description=REQUEST_ID)


class SearchResponse(Closed):
    hits: list[Hit] = Field(description="the top passages, best first")
    generation: str = Field(description=GENERATION)
    request_id: str = Field(description=REQUEST_ID)


# ------------------------------------------------------------------ documents


class UploadResponse(Closed):
    job_id: str = Field(description="the indexing job the files were queued as")
    upload_id: str = Field(description="the upload's folder under the server's uploads")
    files: list[str] = Field(description="the names the files were saved under, in order")
    status_url: str = Field(description="where the job's state is: `/v1/jobs/{job_id}`")
    request_id: str = Field(description=REQUEST_ID)


class Document(Closed):
    """A document of the live index."""

    id: str = Field(description="the document's id")
    path: str = Field(description=PATH)
    title: str = Field(description="its title")
    passages: int = Field(description="how many passages it was cut into")
    length: int = Field(description="its text's length in characters")
    mtime: float = Field(description="its file's modification time (Unix seconds) when "
                                     "indexed")
    metadata: dict[str, Any] = Field(description="what the indexer recorded of it (its path, "
                                                 "tags, ...); free-form")


class DocumentsResponse(Closed):
    documents: list[Document] = Field(description="one page of documents, by path")
    total: int = Field(description="documents in the index")
    limit: int = Field(description="the page size asked for")
    offset: int = Field(description="the offset asked for")
    generation: str = Field(description=GENERATION)


class RemovalResponse(Closed):
    job_id: str = Field(description="the removal job")
    status_url: str = Field(description="where the job's state is: `/v1/jobs/{job_id}`")
    request_id: str = Field(description=REQUEST_ID)


# ------------------------------------------------------------------ jobs


class SkippedFile(Closed):
    path: str = Field(description="the file (an upload by its file name)")
    reason: str = Field(description="why it was not indexed")


class JobReport(Closed):
    """What a finished job did to the index."""

    added: int = Field(description="documents added or changed")
    unchanged: int = Field(description="documents that were indexed already, unchanged")
    removed: int = Field(description="documents removed")
    skipped: list[SkippedFile] = Field(description="files or records that were not indexed")
    not_found: list[str] = Field(description="paths or document ids that were not found")
    documents: int = Field(description="documents in the new generation")
    passages: int = Field(description="passages in the new generation")
    embedded: int = Field(description="passages embedded for it")
    generation: str = Field(description="the generation it published")
    seconds: float = Field(description="how long the update took")


class Job(Closed):
    """An indexing job: an upload to add, or documents to remove."""

    id: str = Field(description="the job's id")
    kind: Literal["add", "remove"] = Field(description="`add` (an upload) or `remove`")
    status: JobStatus = Field(description="where it is")
    files: list[str] = Field(description="an upload's file names; a removal's document ids")
    message: str = Field(description="what it is doing or did, for people")
    progress: dict[str, int] = Field(description="while embedding: `passages_embedded` of "
                                                 "`passages_to_embed`; else empty")
    report: JobReport | None = Field(description="what it did, once done; else null")
    error: str | None = Field(description="why it failed; null unless it failed")
    created: float = Field(description="when it was queued (Unix seconds)")
    started: float | None = Field(description="when it started; null before")
    finished: float | None = Field(description="when it finished; null before")
    upload_dir: str | None = Field(description="an upload's folder; null for removals")
    crashes: int = Field(description="how often the server stopped dead while running it")
    cancel_requested: bool = Field(description="whether a cancel was asked for")


class CancelResponse(Job):
    request_id: str = Field(description=REQUEST_ID)


class JobCounts(Closed):
    """Jobs the server remembers, by status."""

    queued: int = Field(description="waiting to run")
    running: int = Field(description="running")
    done: int = Field(description="finished and published")
    failed: int = Field(description="failed (the uploaded files are kept)")
    cancelled: int = Field(description="cancelled")


class JobsResponse(Closed):
    jobs: list[Job] = Field(description="the most recent jobs, newest first")
    counts: JobCounts = Field(description="all remembered jobs by status")


# ------------------------------------------------------------------ feedback


class FeedbackResponse(Closed):
    id: int = Field(description="the stored feedback's id")
    anonymous: bool = Field(description="whether it came without an API key")
    request_id: str = Field(description=REQUEST_ID)


class SquadAnswer(Closed):
    text: str = Field(description="the answer marked correct")
    answer_start: int = Field(description="where it starts in the paragraph's context")


class SquadQuestion(Closed):
    id: str = Field(description="`feedback-<feedback id>`")
    question: str = Field(description="the question asked")
    answers: list[SquadAnswer] = Field(description="its answer")


class SquadParagraph(Closed):
    context: str = Field(description="the passage text the answer was found in")
    qas: list[SquadQuestion] = Field(description="the questions answered from it")


class SquadArticle(Closed):
    title: str = Field(description="the document's title")
    paragraphs: list[SquadParagraph] = Field(description="one per passage text")


class SquadExport(Closed):
    """SQuAD v1.1, as `spanqa reader train` reads it."""

    version: str = Field(description="`1.1`")
    data: list[SquadArticle] = Field(description="one article per document title")


# ------------------------------------------------------------------ service


class HealthResponse(Closed):
    status: Literal["ok"] = Field(description="`ok` while the server answers")
    generation: str = Field(description="the live index generation")
    documents: int = Field(description="documents in it")
    passages: int = Field(description="passages in it")
    reader: str = Field(description="the reader model (a folder's last part without a key)")


class IndexConfigStats(Open):
    """How the index was built."""

    embedder: str = Field(description="the embedding model")
    backend: str = Field(description="how passages were embedded")
    words: int = Field(description="passage length in words")
    overlap: int = Field(description="words shared by neighbouring passages")
    faiss: str = Field("auto", description="the FAISS index type asked for")
    sentence_words: int = Field(description="sentence groups this long are embedded too "
                                            "(0: whole passages only)")


class IndexStats(Open):
    """The live generation's manifest."""

    generation: str = Field(description="the live generation")
    config: IndexConfigStats = Field(description="how it was built")
    documents: int = Field(description="documents in it")
    passages: int = Field(description="passages in it")
    units: int | None = Field(None, description="embedded units (passages and sentence "
                                                "groups); absent in older indexes")
    dim: int | None = Field(None, description="the embedding dimension; absent in older "
                                              "indexes")
    created: float | None = Field(None, description="when it was built (Unix seconds); "
                                                    "absent in older indexes")
    faiss: str | None = Field(description="the FAISS index type in use; null when empty")


class ReaderStats(Closed):
    name: str = Field(description="the reader model (a folder's last part without a key)")
    device: str = Field(description="where it runs (`cpu`, `cuda:0`, ...)")
    backend: str = Field(description="`torch`, `onnx` or `openvino`")
    dtype: str = Field(description="the dtype it computes in")


class RetrievalStats(Closed):
    mode: str = Field(description="the default retrieval mode")
    retrieval_k: int = Field(description="passages retrieved per question by default")


class ReadingStats(Closed):
    adaptive: bool = Field(description="whether the top passages are read first, the rest "
                                       "only when no answer there is confident")
    first_read: int = Field(description="how many passages are read first")


class CalibrationStats(Closed):
    """confidence = sigmoid(score_weight * score + margin_weight * margin + bias)."""

    score_weight: float | None = Field(description="weight of the span score" + NOT_FINITE)
    margin_weight: float | None = Field(description="weight of the score's margin over the "
                                                    "passage's null score" + NOT_FINITE)
    bias: float | None = Field(description="the bias" + NOT_FINITE)
    retriever_weight: float | None = Field(description="weight of -log(passage rank) in the "
                                                       "ranking score" + NOT_FINITE)
    threshold: float | None = Field(description="answers below this confidence are held back"
                                                + NOT_FINITE)
    early_stop: float | None = Field(description="adaptive reading stops at this confidence"
                                                 + NOT_FINITE)
    first_read: int = Field(description="passages adaptive reading reads first")
    fitted: bool = Field(description="whether it was fitted on data")
    ece: float | None = Field(description="expected calibration error on its data; null if "
                                          "not fitted")
    ece_before: float | None = Field(description="the same with the defaults; null if not "
                                                 "fitted")
    fitted_on: str = Field(description="what it was fitted on")
    source: Literal["fitted", "defaults"] = Field(description="`fitted` or `defaults`")


class BatchingStats(Closed):
    """The micro-batcher that reads concurrent questions in one reader pass."""

    max_batch: int = Field(description="questions per reader pass at most")
    max_wait_ms: float = Field(description="how long a batch waits for company")
    batches: int = Field(description="reader passes so far")
    requests: int = Field(description="questions read so far")
    mean_batch_size: float = Field(description="questions per pass, on average")
    largest_batch: int = Field(description="the most questions in one pass")
    batch_sizes: dict[str, int] = Field(description="passes by their number of questions")
    retried_one_by_one: int = Field(description="failed batches read again one question "
                                                "at a time")
    pending: int = Field(description="questions waiting for the model now")
    busy_seconds: float = Field(description="time the model spent reading")


class FeedbackCounts(Closed):
    total: int = Field(description="feedback records stored")
    correct: int = Field(description="... marked correct")
    anonymous: int = Field(description="... sent without an API key")


class AuthStats(Closed):
    keys: int = Field(description="API keys configured")
    protect_all: bool = Field(description="whether every /v1 route but health needs a key")
    anonymous_feedback: bool = Field(description="whether feedback is taken without a key")


class StatsResponse(Closed):
    index: IndexStats = Field(description="the live index")
    reader: ReaderStats = Field(description="the reader model")
    retrieval: RetrievalStats = Field(description="retrieval defaults")
    reading: ReadingStats = Field(description="how passages are read")
    calibration: CalibrationStats = Field(description="the reader's calibration")
    batching: BatchingStats = Field(description="reader batching")
    jobs: JobCounts = Field(description="indexing jobs by status")
    feedback: FeedbackCounts = Field(description="stored feedback")
    auth: AuthStats = Field(description="who may call what")
    uptime_s: float = Field(description="seconds since the app was built")
