#pragma once
// The status page the admin endpoint serves at GET /: one self-contained HTML document
// (no external assets, so that it works on an isolated host and leaks nothing) that
// reads /status once a second and draws one row per backend.
//
// The page keeps what it shows in the DOM as data attributes as well (data-state and
// data-perc on each backend row, data-fetches on <body>), so that the test in a headless
// browser checks values rather than pixels.

#include <string_view>

namespace respfence::proxy {

inline constexpr std::string_view k_status_page = R"RFPAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>respfence</title>
<style>
  :root { --fg: #1d2330; --muted: #6b7280; --line: #e5e7eb; --bg: #f8fafc;
          --ready: #15803d; --loading: #b45309; --connecting: #1d4ed8; --down: #b91c1c; }
  * { box-sizing: border-box; }
  body { margin: 0; padding: 20px; font: 14px/1.4 system-ui, -apple-system, "Segoe UI",
         Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 24px; margin-bottom: 16px; }
  h1 { font-size: 20px; margin: 0; }
  h1 small { font-weight: normal; color: var(--muted); }
  .facts { display: flex; gap: 18px; margin: 0; }
  .facts div { display: flex; gap: 6px; }
  .facts dt { color: var(--muted); }
  .facts dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
  #link { margin-left: auto; color: var(--muted); }
  #link[data-ok="false"] { color: var(--down); font-weight: 600; }
  table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
  th, td { padding: 8px 7px; border-bottom: 1px solid var(--line); text-align: right;
           white-space: nowrap; font-variant-numeric: tabular-nums; }
  th { font-size: 11px; font-weight: 600; color: var(--muted); text-transform: uppercase;
       background: #f1f5f9; }
  th:first-child, td:first-child, th.l, td.l { text-align: left; }
  td .addr { display: block; color: var(--muted); font-size: 12px; }
  .state { display: inline-block; min-width: 76px; padding: 2px 8px; border-radius: 10px;
           color: #fff; text-align: center; font-weight: 600; font-size: 12px; }
  .state.ready { background: var(--ready); }
  .state.loading { background: var(--loading); }
  .state.connecting { background: var(--connecting); }
  .state.down { background: var(--down); }
  .note { display: block; color: var(--muted); font-size: 12px; white-space: normal; max-width: 240px; }
  td.bar { min-width: 180px; }
  progress { width: 88px; height: 12px; vertical-align: middle; accent-color: var(--loading); }
  tr[data-state="ready"] progress { accent-color: var(--ready); }
  .perc { display: inline-block; min-width: 44px; font-weight: 600; }
  .eta { margin-left: 6px; color: var(--muted); }
  tr.retired td { opacity: .5; }
  footer { margin-top: 10px; color: var(--muted); font-size: 12px; }
  footer a { color: inherit; }
</style>
</head>
<body data-fetches="0">
<header>
  <h1>respfence <small id="version"></small></h1>
  <dl class="facts">
    <div><dt>mode</dt><dd id="mode">-</dd></div>
    <div><dt>uptime</dt><dd id="uptime">-</dd></div>
    <div><dt>client connections</dt><dd id="clients">-</dd></div>
    <div><dt>threads</dt><dd id="threads">-</dd></div>
  </dl>
  <span id="link">connecting to /status ...</span>
</header>
<table>
  <thead><tr>
    <th>backend</th><th class="l">state</th><th class="l">loading</th><th>flush epoch</th>
    <th>queued</th><th>queued bytes</th><th>rejected</th><th>retried</th><th>in state for</th>
  </tr></thead>
  <tbody id="backends"></tbody>
</table>
<footer>Refreshed from <a href="/status">/status</a> every second.
  Also: <a href="/metrics">/metrics</a>, <a href="/readyz">/readyz</a>.</footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);

function duration(s) {
  s = Math.max(0, Math.floor(s));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + (s % 60) + "s";
  const h = Math.floor(m / 60);
  if (h < 24) return h + "h " + (m % 60) + "m";
  return Math.floor(h / 24) + "d " + (h % 24) + "h";
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; ++i; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// Names and errors come from the config and the servers: they go in as text, never as HTML.
function row(b) {
  const tr = el("tr");
  // Ready means loaded: its bar is full. Connecting and down have no progress to show.
  const perc = b.state === "loading" ? b.loading_perc : b.state === "ready" ? 100 : 0;
  tr.dataset.backend = b.name;
  tr.dataset.state = b.state;
  tr.dataset.perc = String(perc);
  if (b.retired) tr.className = "retired";

  const name = el("td", "", b.name);
  name.append(el("span", "addr", b.address + (b.retired ? " (retired)" : "")));
  tr.append(name);

  const state = el("td", "l");
  state.append(el("span", "state " + b.state, b.state));
  if (b.state === "down" && b.last_error) state.append(el("span", "note", b.last_error));
  if (b.cluster_state && b.cluster_state !== "ok") {
    state.append(el("span", "note", "cluster_state: " + b.cluster_state));
  }
  tr.append(state);

  const bar = el("td", "l bar");
  const p = el("progress");
  p.max = 100;
  p.value = perc;
  bar.append(p, " ", el("span", "perc", b.state === "loading" || b.state === "ready"
                                            ? perc.toFixed(1) + "%" : "-"));
  if (b.state === "loading") bar.append(el("span", "eta", "ETA " + duration(b.loading_eta_s)));
  tr.append(bar);

  for (const v of [b.flush_epoch, b.queued, bytes(b.queued_bytes), b.rejected, b.retried,
                   duration(b.state_since_s)]) {
    tr.append(el("td", "", String(v)));
  }
  return tr;
}

function render(s) {
  $("version").textContent = s.version;
  $("mode").textContent = s.mode;
  $("uptime").textContent = duration(s.uptime_s);
  $("clients").textContent = String(s.clients);
  $("threads").textContent = String(s.threads);
  $("backends").replaceChildren(...s.backends.map(row));
  document.title = "respfence: " + s.backends.filter((b) => b.state === "ready").length +
                   "/" + s.backends.length + " ready";
}

let fetches = 0;
async function refresh() {
  const link = $("link");
  try {
    const r = await fetch("/status", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    document.body.dataset.fetches = String(++fetches);
    link.dataset.ok = "true";
    link.textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    // The proxy stopped or restarted: keep the last rows, say so, and keep trying.
    link.dataset.ok = "false";
    link.textContent = "/status unreachable (" + e.message + "); retrying";
  }
  setTimeout(refresh, 1000);
}
refresh();
</script>
</body>
</html>
)RFPAGE";

}  // namespace respfence::proxy
