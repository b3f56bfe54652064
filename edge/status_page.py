"""The live status page: one HTML document, no framework, a small script that polls JSON.

The script fetches the ``status_page: json`` location (``__JSON_URL__`` is
replaced by its URL, relative to the page) once a second and fills the
tables.  Every value goes in through ``textContent``: error-log lines carry
client bytes (request lines, hosts), which must never become markup.
"""

from __future__ import annotations

STATUS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.4em; margin: 0 0 .2em; }
  h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
  table { border-collapse: collapse; min-width: 30em; }
  th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
  th { background: #f3f3f3; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .up { color: #11772d; font-weight: bold; }
  .down { color: #b00020; font-weight: bold; }
  .backup { color: #8a6d00; }
  #summary span { display: inline-block; margin-right: 1.6em; }
  #summary b { font-size: 1.3em; }
  pre { background: #f7f7f7; padding: .5em; white-space: pre-wrap; margin: 0; }
  #stale { color: #b00020; }
</style>
</head>
<body>
<h1>edge status</h1>
<div id="updated">loading&hellip;</div><div id="stale"></div>
<h2>Connections</h2>
<div id="summary">
  <span>active <b id="active">-</b></span>
  <span>reading <b id="reading">-</b></span>
  <span>writing <b id="writing">-</b></span>
  <span>waiting <b id="waiting">-</b></span>
  <span>requests <b id="requests">-</b></span>
  <span>req/s <b id="rate">-</b></span>
  <span>workers <b id="workers">-</b></span>
  <span>reloads <b id="reloads">-</b></span>
</div>
<h2>Upstreams</h2>
<table id="upstreams"><thead><tr>
  <th>upstream</th><th>peer</th><th>health</th><th>active</th><th>failures</th>
</tr></thead><tbody></tbody></table>
<h2>Requests by location</h2>
<table id="locations"><thead><tr>
  <th>server</th><th>location</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>total</th>
</tr></thead><tbody></tbody></table>
<h2>Last errors</h2>
<div id="errors"><pre>none</pre></div>
<script>
"use strict";
const JSON_URL = __JSON_URL__;
let previous = null;

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (className) td.className = className;
  row.appendChild(td);
}

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
}

function render(doc) {
  const c = doc.connections;
  for (const key of ["active", "reading", "writing", "waiting"]) {
    document.getElementById(key).textContent = c[key];
  }
  document.getElementById("requests").textContent = doc.requests_total;
  document.getElementById("workers").textContent = doc.workers.length;
  document.getElementById("reloads").textContent = doc.reloads;
  if (previous !== null && doc.time > previous.time) {
    const rate = (doc.requests_total - previous.requests_total) / (doc.time - previous.time);
    document.getElementById("rate").textContent = rate.toFixed(1);
  }
  previous = doc;
  const peers = [];
  for (const upstream of doc.upstreams) {
    for (const peer of upstream.peers) {
      const row = document.createElement("tr");
      cell(row, upstream.name);
      cell(row, peer.peer);
      const health = peer.down ? "down (config)" : peer.up ? "up" : "failed";
      cell(row, health + (peer.backup ? ", backup" : ""), peer.up ? "up" : "down");
      cell(row, peer.conns, "num");
      cell(row, peer.fails, "num");
      peers.push(row);
    }
  }
  fill("upstreams", peers);
  const locations = doc.requests.map((r) => {
    const row = document.createElement("tr");
    cell(row, r.server);
    cell(row, r.location || "(none)");
    for (const k of ["2xx", "3xx", "4xx", "5xx"]) cell(row, r[k], "num");
    cell(row, r.total, "num");
    return row;
  });
  fill("locations", locations);
  const errors = document.getElementById("errors");
  if (doc.errors.length === 0) {
    const pre = document.createElement("pre");
    pre.textContent = "none";
    errors.replaceChildren(pre);
  } else {
    const pre = document.createElement("pre");
    pre.textContent = doc.errors.map((e) => e.line).join("\\n");
    errors.replaceChildren(pre);
  }
  document.getElementById("updated").textContent =
    "updated " + new Date(doc.time * 1000).toISOString() + " by worker " + doc.pid;
  document.getElementById("stale").textContent = "";
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
