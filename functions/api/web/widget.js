/* RAG-Autotune search widget. No dependencies. Embed with one tag:
 *   <script src="https://API/widget.js" data-api="https://API" data-key="API_KEY" defer></script>
 * Optional: data-target="#css-selector" (where to render; default: right after the script tag),
 *           data-top-k="5", data-placeholder="Ask the docs…".
 * Answers stream over Server-Sent Events (POST /ask with "stream": true; API Gateway delivers the stream in
 * one piece, a local server or a function URL streams it). Every text from the API is inserted with
 * textContent, never as HTML. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var cfg = script.dataset;
  // Default API: the folder the script came from (keeps an API Gateway stage path such as /Prod).
  var api = (cfg.api || new URL(".", new URL(script.src, location.href)).href).replace(/\/+$/, "");
  var topK = parseInt(cfg.topK || "5", 10);
  var uid = "rag" + Math.random().toString(36).slice(2, 8);

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function headers(json) {
    var h = { Accept: json ? "application/json" : "text/event-stream", "Content-Type": "application/json" };
    if (cfg.key) h["x-api-key"] = cfg.key;
    return h;
  }

  // -- layout ------------------------------------------------------------------------------------------
  var root = el("section", { class: "rag-widget", "aria-label": "Ask the documentation" });
  var form = el("form", { class: "rag-form", role: "search" });
  var label = el("label", { for: uid + "-q", class: "rag-visually-hidden" }, "Your question");
  var input = el("input", {
    id: uid + "-q", type: "search", name: "q", required: "", maxlength: "2000", autocomplete: "off",
    placeholder: cfg.placeholder || "Ask the docs…"
  });
  var button = el("button", { type: "submit" }, "Ask");
  form.append(label, input, button);
  var status = el("p", { class: "rag-status", role: "status", "aria-live": "polite" });
  var answer = el("div", { class: "rag-answer", "aria-live": "polite" });
  var list = el("ol", { class: "rag-citations", "aria-label": "Sources" });
  root.append(form, status, answer, list);
  var target = cfg.target ? document.querySelector(cfg.target) : null;
  if (target) target.appendChild(root); else script.insertAdjacentElement("afterend", root);

  // -- feedback ----------------------------------------------------------------------------------------
  function vote(queryId, docId, kind, row) {
    var buttons = row.querySelectorAll("button.rag-vote");
    buttons.forEach(function (b) { b.disabled = true; });
    var note = row.querySelector(".rag-thanks");
    fetch(api + "/feedback", {
      method: "POST", headers: headers(true),
      body: JSON.stringify({ query_id: queryId, doc_id: docId, vote: kind })
    }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      row.querySelector('button[data-vote="' + kind + '"]').setAttribute("aria-pressed", "true");
      note.textContent = "Thanks!";
    }).catch(function () {
      buttons.forEach(function (b) { b.disabled = false; });
      note.textContent = "Could not send your vote; try again.";
    });
  }

  function showCitations(queryId, citations) {
    list.replaceChildren();
    citations.forEach(function (c) {
      var row = el("li", { class: "rag-citation", "data-doc-id": c.doc_id });
      var title = c.url ? el("a", { href: c.url, rel: "noopener", target: "_blank" }, c.title) : el("strong", {}, c.title);
      var head = el("div", { class: "rag-citation-head" });
      head.append(el("span", { class: "rag-num", "aria-hidden": "true" }, "[" + c.rank + "]"), title);
      var snippet = el("p", { class: "rag-snippet" }, c.snippet);
      var votes = el("div", { class: "rag-votes", role: "group", "aria-label": "Was this source useful?" });
      [["up", "👍", "Useful"], ["down", "👎", "Not useful"]].forEach(function (v) {
        var b = el("button", { type: "button", class: "rag-vote", "data-vote": v[0], "aria-pressed": "false",
                               "aria-label": v[2] + ": " + c.title }, v[1]);
        b.addEventListener("click", function () { vote(queryId, c.doc_id, v[0], row); });
        votes.append(b);
      });
      votes.append(el("span", { class: "rag-thanks", role: "status" }));
      row.append(head, snippet, votes);
      list.append(row);
    });
  }

  // -- Server-Sent Events over fetch (EventSource cannot POST) -------------------------------------------
  function parseEvents(buffer, onEvent) {
    var parts = buffer.split("\n\n");
    var rest = parts.pop();
    parts.forEach(function (block) {
      var name = "message", data = [];
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event:") === 0) name = line.slice(6).trim();
        else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
      });
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    });
    return rest;
  }

  function ask(query) {
    button.disabled = true;
    status.textContent = "Searching…";
    answer.textContent = "";
    list.replaceChildren();
    var queryId = null;
    function onEvent(name, data) {
      if (name === "citations") { queryId = data.query_id; showCitations(queryId, data.citations); status.textContent = ""; }
      else if (name === "delta") answer.textContent += data.text;
      else if (name === "done") status.textContent = list.children.length ? "" : "No matching documents.";
      else if (name === "error") throw new Error((data.error && data.error.message) || "error");
    }
    return fetch(api + "/ask", {
      method: "POST", headers: headers(false), body: JSON.stringify({ query: query, top_k: topK, stream: true })
    }).then(function (r) {
      if (!r.ok) return r.json().then(function (e) { throw new Error((e.error && e.error.message) || ("HTTP " + r.status)); });
      var decoder = new TextDecoder(), buffer = "";
      if (!r.body || !r.body.getReader) return r.text().then(function (t) { parseEvents(t + "\n\n", onEvent); });
      var reader = r.body.getReader();
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { parseEvents(buffer + "\n\n", onEvent); return; }
          buffer = parseEvents(buffer + decoder.decode(chunk.value, { stream: true }), onEvent);
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      status.textContent = "Sorry: " + err.message;
    }).then(function () { button.disabled = false; });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var q = input.value.trim();
    if (q) ask(q);
  });

  if (!document.querySelector('link[data-rag-widget]')) {  // the stylesheet sits beside the script
    var css = el("link", { rel: "stylesheet", href: api + "/widget.css", "data-rag-widget": "" });
    document.head.appendChild(css);
  }
})();
