"""appserver's live status page: one HTML document, no framework, a small script polling JSON.

What uwsgitop shows, in a browser: one row per worker process (pid, status,
requests, req/s from two polls, exceptions, RSS, busy/idle threads, average
response time, respawns, harakiri kills), the listeners' accept queues, and
every request in flight with its URI and how long it has run.  The script
reads ``status.json`` (next to the page) once a second; every value goes in
through ``textContent``, since request lines are client bytes.
"""

from __future__ import annotations

STATUS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>appserver status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.4em; margin: 0 0 .2em; }
  h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
  table { border-collapse: collapse; min-width: 30em; }
  th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
  th { background: #f3f3f3; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.busy { color: #8a4b00; font-weight: bold; }
  td.idle { color: #11772d; }
  td.sig, td.booting { color: #666; font-style: italic; }
  tr.old td { background: #fafafa; color: #777; }
  #summary span { display: inline-block; margin-right: 1.6em; }
  #summary b { font-size: 1.3em; }
  #stale { color: #b00020; }
  code { font-size: 13px; }
</style>
</head>
<body>
<h1>appserver status</h1>
<div id="updated">loading&hellip;</div><div id="stale"></div>
<div id="summary">
  <span>requests <b id="requests">-</b></span>
  <span>req/s <b id="rate">-</b></span>
  <span>exceptions <b id="exceptions">-</b></span>
  <span>busy threads <b id="busy">-</b></span>
  <span>idle threads <b id="idle">-</b></span>
  <span>listen queue <b id="queue">-</b></span>
  <span>respawns <b id="respawns">-</b></span>
  <span>harakiri <b id="harakiri">-</b></span>
  <span>reloads <b id="reloads">-</b></span>
</div>
<h2>Workers</h2>
<table id="workers"><thead><tr>
  <th>worker</th><th>pid</th><th>status</th><th>requests</th><th>req/s</th><th>exceptions</th>
  <th>busy</th><th>idle</th><th>avg ms</th><th>RSS MB</th><th>respawns</th><th>harakiri</th>
  <th>spawned</th>
</tr></thead><tbody></tbody></table>
<h2>Requests in flight</h2>
<table id="busy_requests"><thead><tr>
  <th>worker</th><th>pid</th><th>thread</th><th>request</th><th>running for</th>
</tr></thead><tbody></tbody></table>
<h2>Listeners</h2>
<table id="listeners"><thead><tr>
  <th>listener</th><th>protocol</th><th>accept queue</th><th>limit</th>
</tr></thead><tbody></tbody></table>
<script>
"use strict";
const JSON_URL = "status.json";
let previous = null;

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (className) td.className = className;
  row.appendChild(td);
}

function fill(id, rows, empty) {
  const body = document.querySelector("#" + id + " tbody");
  if (rows.length === 0) {
    const row = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = document.querySelectorAll("#" + id + " th").length;
    td.textContent = empty;
    row.appendChild(td);
    rows = [row];
  }
  body.replaceChildren(...rows);
}

function render(doc) {
  const byPid = new Map();
  if (previous !== null) for (const w of previous.workers) byPid.set(w.pid, w);
  const seconds = previous !== null ? doc.time - previous.time : 0;
  let busy = 0, idle = 0;
  const workers = doc.workers.map((w) => {
    busy += w.busy;
    idle += w.idle;
    const row = document.createElement("tr");
    if (w.generation === "old") row.className = "old";
    cell(row, w.id + (w.generation === "old" ? " (old)" : ""));
    cell(row, w.pid, "num");
    cell(row, w.status, w.status);
    cell(row, w.requests, "num");
    const before = byPid.get(w.pid);
    cell(row, before && seconds > 0 ? ((w.requests - before.requests) / seconds).toFixed(1) : "-", "num");
    cell(row, w.exceptions, "num");
    cell(row, w.busy + "/" + w.threads, "num");
    cell(row, w.idle, "num");
    cell(row, w.avg_rt_ms.toFixed(1), "num");
    cell(row, (w.rss / 1048576).toFixed(1), "num");
    cell(row, w.respawns, "num");
    cell(row, w.harakiri, "num");
    cell(row, new Date(w.last_spawn * 1000).toISOString().replace("T", " ").slice(0, 19));
    return row;
  });
  fill("workers", workers, "no worker running");
  fill("busy_requests", doc.busy_requests.map((r) => {
    const row = document.createElement("tr");
    cell(row, r.worker, "num");
    cell(row, r.pid, "num");
    cell(row, r.core, "num");
    const td = document.createElement("td");
    const code = document.createElement("code");
    code.textContent = r.request;
    td.appendChild(code);
    row.appendChild(td);
    cell(row, r.elapsed.toFixed(1) + " s", "num");
    return row;
  }), "none: every thread is idle");
  let queue = 0;
  fill("listeners", doc.listeners.map((l) => {
    queue += l.queue;
    const row = document.createElement("tr");
    cell(row, l.name);
    cell(row, l.proto);
    cell(row, l.queue, "num");
    cell(row, l.max_queue, "num");
    return row;
  }), "none");
  const set = (id, value) => { document.getElementById(id).textContent = value; };
  set("requests", doc.requests_total);
  set("exceptions", doc.exceptions_total);
  set("busy", busy);
  set("idle", idle);
  set("queue", queue);
  set("respawns", doc.respawns_total);
  set("harakiri", doc.harakiri_total);
  set("reloads", doc.reloads);
  if (previous !== null && seconds > 0) {
    set("rate", ((doc.requests_total - previous.requests_total) / seconds).toFixed(1));
  }
  previous = doc;
  set("updated", "updated " + new Date(doc.time * 1000).toISOString() + " by master " + doc.pid);
  set("stale", "");
}

async function poll() {
  try {
    const response = await fetch(JSON_URL, {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (error) {
    document.getElementById("stale").textContent = "cannot read " + JSON_URL + ": " + error;
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
"""
