/* SpanQA web page: ask a question, show ranked answers with their sources, collect feedback.
 *
 * Every piece of text that comes from the server is put into the page with textContent or
 * text nodes, never innerHTML: documents may hold anything, including markup.
 */
"use strict";

(function () {
  const KEY_STORAGE = "spanqa.apiKey";
  const SNIPPET_CHARS = 280;

  const $ = (id) => document.getElementById(id);
  const form = $("ask-form");
  const question = $("question");
  const askButton = $("ask");
  const topK = $("top-k");
  const pathPrefix = $("path-prefix");
  const apiKey = $("api-key");
  const apiKeyBox = $("api-key-box");
  const apiKeyClear = $("api-key-clear");
  const apiKeyStatus = $("api-key-status");
  const errorBox = $("error");
  const results = $("results");

  let inFlight = null; // AbortController of the question being answered

  /* ---------- small DOM helpers (text only) ---------- */

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function formatMs(ms) {
    if (typeof ms !== "number" || !isFinite(ms)) return null;
    return ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : Math.round(ms) + " ms";
  }

  function percent(confidence) {
    const value = Number(confidence);
    if (!isFinite(value)) return 0;
    return Math.max(0, Math.min(100, Math.round(value * 100)));
  }

  function snippet(text, chars) {
    const t = String(text || "").replace(/\s+/g, " ").trim();
    if (t.length <= chars) return t;
    const cut = t.lastIndexOf(" ", chars);
    return t.slice(0, cut > chars * 0.6 ? cut : chars) + "…";
  }

  /* ---------- API key ---------- */

  function storedKey() {
    try {
      return localStorage.getItem(KEY_STORAGE) || "";
    } catch (e) {
      return "";
    }
  }

  function saveKey(value) {
    try {
      if (value) localStorage.setItem(KEY_STORAGE, value);
      else localStorage.removeItem(KEY_STORAGE);
    } catch (e) {
      /* private mode: the key still works for this page */
    }
    apiKeyStatus.textContent = value ? "Key saved in this browser." : "No key set.";
  }

  function headers() {
    const h = { "Content-Type": "application/json", "Accept": "application/json" };
    const key = apiKey.value.trim();
    if (key) h["X-API-Key"] = key;
    return h;
  }

  /* ---------- errors ---------- */

  function describeDetail(detail) {
    if (detail === null || detail === undefined) return "";
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      // FastAPI/pydantic validation errors: [{loc: ["body", "question"], msg: "..."}]
      return detail.map((item) => {
        if (item && typeof item === "object") {
          const loc = Array.isArray(item.loc)
            ? item.loc.filter((p) => p !== "body").join(" → ")
            : "";
          const msg = item.msg || item.message || JSON.stringify(item);
          return loc ? loc + ": " + msg : msg;
        }
        return String(item);
      }).join("\n");
    }
    if (typeof detail === "object") {
      return detail.message || detail.msg || JSON.stringify(detail);
    }
    return String(detail);
  }

  // "this endpoint needs a key" -> "This endpoint needs a key." (server messages are terse)
  function sentence(text) {
    const t = String(text || "").trim();
    if (!t) return "";
    const capital = t.charAt(0).toUpperCase() + t.slice(1);
    return /[.!?…)]$/.test(capital) ? capital : capital + ".";
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function post(path, body, signal) {
    let response;
    try {
      response = await fetch(path, {
        method: "POST", headers: headers(), body: JSON.stringify(body), signal,
      });
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      throw new ApiError(0, "Could not reach the server (" + (e && e.message ? e.message : e) +
        "). Check that SpanQA is running and try again.");
    }
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = null;
      }
    }
    if (!response.ok) {
      const detail = data && typeof data === "object" && "detail" in data ? data.detail : null;
      // a sentence from the server is capitalised; a list of fields ("top_k: ...") is not
      let message = typeof detail === "string" ? sentence(detail) : describeDetail(detail);
      if (!message) message = sentence(text && !data ? snippet(text, 300) : response.statusText);
      const add = (more) => [sentence(message), more].filter(Boolean).join(" ");
      if (response.status === 401 || response.status === 403) {
        message = add("Enter a valid key under “API key”, then ask again.");
        apiKeyBox.open = true;
      } else if (response.status === 429 || response.status === 503) {
        message = add("The server is busy: wait a moment and try again.");
      } else if (response.status >= 500 && data && typeof data.request_id === "string") {
        message = add("Request id: " + data.request_id + ".");
      }
      throw new ApiError(response.status, message || "The request failed.");
    }
    if (data === null) throw new ApiError(response.status, "The server sent an unreadable reply.");
    return data;
  }

  function showError(title, message) {
    errorBox.replaceChildren(
      el("strong", { text: title }),
      el("span", { class: "error-message", text: message || "" }),
    );
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.replaceChildren();
    errorBox.classList.remove("validation");
    question.removeAttribute("aria-invalid");
    question.setAttribute("aria-describedby", "question-hint");
  }

  /* ---------- rendering ---------- */

  function sourceLine(item) {
    const line = el("p", { class: "source" });
    line.append(el("span", { class: "title", text: item.title || item.path || "Untitled document" }));
    if (item.page !== null && item.page !== undefined && item.page !== "") {
      line.append(el("span", { class: "page", text: "page " + item.page }));
    }
    if (item.path) line.append(el("span", { class: "path", title: item.path, text: item.path }));
    return line;
  }

  function contextBlock(answer) {
    const block = el("blockquote", { class: "context" });
    const ctx = answer.context;
    let text, start, end;
    if (ctx && typeof ctx.text === "string" &&
        Number.isInteger(ctx.answer_start) && Number.isInteger(ctx.answer_end) &&
        ctx.answer_start >= 0 && ctx.answer_start <= ctx.answer_end &&
        ctx.answer_end <= ctx.text.length) {
      text = ctx.text;
      start = ctx.answer_start;
      end = ctx.answer_end;
    } else {
      text = String(answer.text || "");
      start = 0;
      end = text.length;
    }
    block.append(
      document.createTextNode(text.slice(0, start)),
      el("mark", { text: text.slice(start, end) }),
      document.createTextNode(text.slice(end)),
    );
    return block;
  }

  function confidenceMeter(confidence, calibrated) {
    const pct = percent(confidence);
    const level = pct >= 70 ? "high" : pct >= 40 ? "medium" : "low";
    const label = calibrated ? "Confidence" : "Confidence (uncalibrated)";
    const fill = el("span", { class: "confidence-fill" });
    fill.style.width = pct + "%";
    return el("div", {
      class: "confidence " + level, role: "meter", "aria-label": label,
      "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct,
      "aria-valuetext": pct + "%",
      title: calibrated ? "Estimated probability that this answer is right"
        : "Score not calibrated on data: compare answers, do not read it as a probability",
    },
    el("span", { class: "confidence-bar", "aria-hidden": "true" }, fill),
    el("span", { class: "confidence-label", "aria-hidden": "true", text: pct + "%" }));
  }

  // Thumb icons drawn inline (no icon font, no emoji font needed: the page works offline).
  const THUMB_UP = "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3z" +
    "M7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3";
  const THUMB_DOWN = "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3z" +
    "M17 2h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17";

  function icon(path) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const shape = document.createElementNS(ns, "path");
    shape.setAttribute("d", path);
    svg.append(shape);
    return svg;
  }

  function feedbackControls(result, answer) {
    const up = el("button", {
      type: "button", class: "feedback-up", "aria-label": "Yes, this answer is right",
      title: "This answer is right",
    }, icon(THUMB_UP), el("span", { "aria-hidden": "true", text: "Yes" }));
    const down = el("button", {
      type: "button", class: "feedback-down", "aria-label": "No, this answer is wrong",
      title: "This answer is wrong",
    }, icon(THUMB_DOWN), el("span", { "aria-hidden": "true", text: "No" }));
    const status = el("span", { class: "feedback-status", role: "status" });
    const box = el("div", { class: "feedback" },
      el("span", { class: "feedback-prompt", text: "Right answer?" }), up, down, status);

    async function send(correct) {
      up.disabled = down.disabled = true;
      status.textContent = "Sending…";
      status.classList.remove("failed");
      try {
        await post("v1/feedback", {
          question: result.question, answer: answer.text, passage_id: answer.passage_id,
          start: answer.start, end: answer.end, correct,
        });
        (correct ? up : down).classList.add("chosen");
        (correct ? up : down).setAttribute("aria-pressed", "true");
        box.classList.add("sent");
        status.textContent = "Thanks";
      } catch (e) {
        // The buttons stay usable: after a key is entered (or the server is less busy),
        // the same click sends the feedback again.
        up.disabled = down.disabled = false;
        status.classList.add("failed");
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
          // Feedback is training data: servers take it with an API key unless they allow
          // anonymous feedback. post() has opened the key box.
          status.textContent = "Feedback not saved: it needs an API key. Enter one under " +
            "“API key”, then click again.";
        } else {
          status.textContent = "Feedback not saved: " + (e.message || e);
        }
      }
    }
    up.addEventListener("click", () => send(true));
    down.addEventListener("click", () => send(false));
    return box;
  }

  function answerCard(result, answer, rank, label = "Answer") {
    const meta = el("div", { class: "answer-meta" }, confidenceMeter(answer.confidence, result.calibrated));
    if (answer.occurrences > 1) {
      meta.append(el("span", { class: "occurrences", text: "found in " + answer.occurrences + " passages" }));
    }
    return el("li", { class: "answer", "data-passage-id": answer.passage_id },
      el("div", { class: "answer-head" },
        el("span", { class: "rank", "aria-label": label + " " + rank, text: String(rank) }),
        el("p", { class: "answer-text", text: answer.text })),
      contextBlock(answer),
      sourceLine(answer),
      meta,
      feedbackControls(result, answer));
  }

  function passageList(passages) {
    const list = el("ol", { class: "passages" });
    for (const p of passages) {
      list.append(el("li", { class: "passage" },
        sourceLine(p),
        el("p", { class: "snippet", text: snippet(p.text, SNIPPET_CHARS) })));
    }
    return list;
  }

  function summaryLine(result, count) {
    const what = count === 0 ? "No confident answer" : count === 1 ? "1 answer" : count + " answers";
    const total = formatMs(result.timing_ms && result.timing_ms.total);
    const line = el("p", { class: "summary" }, what);
    if (total) {
      const timing = el("span", { class: "timing", text: "answered in " + total });
      const t = result.timing_ms || {};
      const detail = ["retrieve", "read"].filter((k) => typeof t[k] === "number")
        .map((k) => k + " " + formatMs(t[k])).join(", ");
      if (detail) timing.title = detail;
      line.append(" · ", timing);
    }
    if (result.calibrated === false && count > 0) {
      line.append(" · ", el("span", {
        class: "uncalibrated", text: "confidences not calibrated",
        title: "The reader has no calibration fitted on data; percentages only rank answers.",
      }));
    }
    return line;
  }

  function render(result) {
    const answers = Array.isArray(result.answers) ? result.answers : [];
    const passages = Array.isArray(result.passages) ? result.passages : [];
    const noAnswer = result.handoff === true || answers.length === 0;
    const nodes = [el("h2", { class: "visually-hidden", text: "Results" }),
      summaryLine(result, noAnswer ? 0 : answers.length)];

    if (noAnswer) {
      const box = el("div", { id: "no-answer", class: "no-answer" },
        el("h2", { text: "No answer found" }),
        el("p", { text: "SpanQA could not find an answer it is confident about in the documents. " +
          "This question can be passed to a person who knows the subject." }));
      const quoted = el("p", { class: "handoff-question" },
        el("span", { class: "label", text: "Question: " }), el("q", { text: result.question || "" }));
      box.append(quoted);
      if (passages.length) {
        box.append(el("h3", { text: "Closest passages" }), passageList(passages));
      } else {
        box.append(el("p", { class: "hint", text: "No passage matched the question either." }));
      }
      nodes.push(box);
      const guesses = answers.length ? answers : (result.best_guess ? [result.best_guess] : []);
      if (guesses.length) {
        nodes.push(el("h3", { text: "Best guess, below the confidence threshold" }));
        const list = el("ol", { class: "answers uncertain" });
        guesses.forEach((a, i) => list.append(answerCard(result, a, i + 1, "Guess below the threshold")));
        nodes.push(list);
      }
    } else {
      const list = el("ol", { class: "answers" });
      answers.forEach((a, i) => list.append(answerCard(result, a, i + 1)));
      nodes.push(list);
    }
    if (result.request_id) {
      nodes.push(el("p", { class: "request-id", text: "request " + result.request_id }));
    }
    results.replaceChildren(...nodes);
  }

  function showLoading(text) {
    results.setAttribute("aria-busy", "true");
    results.replaceChildren(el("p", { class: "loading", role: "status" },
      el("span", { class: "spinner", "aria-hidden": "true" }), "Searching the documents for “" + text + "”…"));
  }

  /* ---------- asking ---------- */

  async function ask(text) {
    clearError();
    if (!text) {
      question.setAttribute("aria-invalid", "true");
      question.setAttribute("aria-describedby", "question-hint error");
      errorBox.classList.add("validation");
      showError("Please type a question.", "Write what you want to know, then press Enter.");
      results.replaceChildren();
      question.focus();
      return;
    }
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;

    const body = { question: text, top_k: parseInt(topK.value, 10) || 3 };
    const prefix = pathPrefix.value.trim();
    if (prefix) body.filters = { path_prefix: prefix };

    const url = new URL(window.location.href);
    url.searchParams.set("q", text);
    try {
      history.replaceState(null, "", url);
    } catch (e) {
      /* file:// or sandboxed: not important */
    }

    askButton.disabled = true;
    form.classList.add("busy");
    showLoading(text);
    try {
      const result = await post("v1/ask", body, controller.signal);
      if (inFlight !== controller) return;
      render(result);
    } catch (e) {
      if (inFlight !== controller || (e && e.name === "AbortError")) return;
      results.replaceChildren();
      const status = e instanceof ApiError && e.status ? " (HTTP " + e.status + ")" : "";
      showError("The question could not be answered" + status + ".", e.message || String(e));
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) apiKey.focus();
    } finally {
      if (inFlight === controller) {
        inFlight = null;
        askButton.disabled = false;
        form.classList.remove("busy");
        results.setAttribute("aria-busy", "false");
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ask(question.value.trim());
  });

  question.addEventListener("input", () => {
    if (question.getAttribute("aria-invalid") && question.value.trim()) clearError();
  });

  apiKey.value = storedKey();
  if (apiKey.value) apiKeyStatus.textContent = "Key saved in this browser.";
  apiKey.addEventListener("input", () => saveKey(apiKey.value.trim()));
  apiKey.addEventListener("keydown", (event) => {
    // Enter in the key field saves it and asks the question again, if there is one.
    if (event.key === "Enter") {
      event.preventDefault();
      saveKey(apiKey.value.trim());
      if (question.value.trim()) ask(question.value.trim());
    }
  });
  apiKeyClear.addEventListener("click", () => {
    apiKey.value = "";
    saveKey("");
    apiKey.focus();
  });

  const initial = new URLSearchParams(window.location.search).get("q");
  if (initial && initial.trim()) {
    question.value = initial;
    ask(initial.trim());
  } else {
    question.focus();
  }
})();
