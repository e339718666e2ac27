// Draws the charts whose data the server put in a data-chart attribute (no inline scripts:
// the console's Content-Security-Policy allows scripts from this server only).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const canvas = document.getElementById("pflops-chart");
  if (!canvas || typeof Chart === "undefined") { return; }
  const data = JSON.parse(canvas.dataset.chart);
  new Chart(canvas, {
    type: "bar",
    data: { labels: data.labels,
            datasets: [{ label: canvas.dataset.label, data: data.pflops, backgroundColor: "#2f6fde" }] },
    options: { maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } } },
  });
});

// The chat playground (apps): post the message with fetch, read the answer's events as they
// stream (newline-delimited JSON) and insert them as text (textContent, never HTML), then
// the cited chunks. Without this script the form posts normally and the page has the answer.
document.addEventListener("DOMContentLoaded", function () {
  const form = document.querySelector("form[data-stream]");
  if (!form || !window.fetch || !window.ReadableStream || !window.TextDecoder) { return; }
  const q = function (id) { return document.querySelector("[data-testid=" + id + "]"); };
  const answer = q("answer"), failure = q("answer-error"), tokens = q("tokens");
  const cited = q("citations"), fieldError = q("chat-error"), button = q("send");

  function show(node, text) { node.textContent = text; node.hidden = !text; }

  function citation(c) {
    const item = document.createElement("li");
    item.className = "citation";
    item.dataset.document = c.document;
    const doc = document.createElement("strong");
    doc.className = "doc";
    doc.textContent = c.document;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = " " + cited.dataset.score + " " + Number(c.score).toFixed(4);
    const text = document.createElement("blockquote");
    text.textContent = c.text;
    item.append(doc, score, text);
    return item;
  }

  function handle(event) {
    if (event.event === "text") {
      answer.append(document.createTextNode(event.text));
    } else if (event.event === "done") {
      answer.dataset.state = "done";
      tokens.textContent = tokens.dataset.label.replace("{p}", event.prompt_tokens)
        .replace("{c}", event.completion_tokens);
      event.citations.forEach(function (c) { cited.append(citation(c)); });
      if (!event.citations.length) {
        const none = document.createElement("li");
        none.className = "hint";
        none.textContent = cited.dataset.empty;
        cited.append(none);
      }
    } else {
      answer.dataset.state = "failed";
      show(event.status === 422 ? fieldError : failure, event.message);
    }
  }

  async function ask() {
    answer.textContent = ""; cited.textContent = ""; tokens.textContent = "";
    show(failure, ""); show(fieldError, "");
    answer.dataset.state = "streaming";
    button.disabled = true;
    const csrf = form.querySelector("input[name=csrf]").value;
    try {
      const response = await fetch(form.dataset.stream, {
        method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "Accept": "application/x-ndjson" },
      });
      if (!response.body || !(response.headers.get("content-type") || "").includes("ndjson")) {
        handle({ event: "failed", status: response.status, message: "HTTP " + response.status });
        return;
      }
      const reader = response.body.getReader(), decoder = new TextDecoder();
      let buffered = "";
      for (;;) {
        const read = await reader.read();
        if (read.done) { break; }
        buffered += decoder.decode(read.value, { stream: true });
        let end;
        while ((end = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, end);
          buffered = buffered.slice(end + 1);
          if (line) { handle(JSON.parse(line)); }
        }
      }
    } catch (error) {
      handle({ event: "failed", status: 0, message: String(error) });
    } finally {
      button.disabled = false;
      if (answer.dataset.state === "streaming") { answer.dataset.state = "failed"; }
    }
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); ask(); });
});
