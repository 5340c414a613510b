// The console's scripts. Every page works without them; with them, tables copy as CSV,
// the overview updates itself over the live WebSocket, and the rates explorer draws its
// chart. Built by `make install` into src/ledgerflow/web/static/dist (nothing from a CDN).

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

// Tables as CSV, exactly as shown (amounts are the strings the server wrote).

function cellText(cell) {
  return cell.dataset.value ?? cell.textContent.trim();
}

function csvField(text) {
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function tableToCsv(table) {
  const rows = [...table.querySelectorAll("tr")].filter((row) => !row.dataset.empty);
  return rows
    .map((row) => [...row.querySelectorAll("th, td")].map((cell) => csvField(cellText(cell))).join(","))
    .join("\n") + "\n";
}

// The asynchronous clipboard needs a secure context (HTTPS or localhost); over plain HTTP
// a hidden text area and the older copy command do the same.
export async function copyText(text) {
  if (window.isSecureContext && navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the older way
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } finally {
    area.remove();
  }
  return copied;
}

function addCopyButtons() {
  for (const table of document.querySelectorAll("table[data-table]")) {
    const actions = table.closest("section")?.querySelector(".table-actions");
    if (!actions || actions.querySelector("[data-copy]")) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.dataset.copy = table.dataset.table;
    button.textContent = "Copy as CSV";
    const status = document.createElement("span");
    status.className = "muted copy-status";
    status.setAttribute("role", "status");
    button.addEventListener("click", async () => {
      const copied = await copyText(tableToCsv(table));
      status.textContent = copied ? "Copied" : "Copy failed: use Download CSV";
      setTimeout(() => { status.textContent = ""; }, 3000);
    });
    actions.prepend(status, button);
  }
}

// The overview, live.

function setCell(row, key, value) {
  const cell = row.querySelector(`[data-key="${key}"]`);
  if (!cell) return;
  const text = value === null || value === undefined ? "—" : String(value);
  if (cell.textContent !== text) {
    cell.textContent = text;
    cell.classList.remove("changed");
    void cell.offsetWidth; // restart the highlight
    cell.classList.add("changed");
  }
}

function renderRows(table, rows, columns, id) {
  const body = table.tBodies[0];
  const existing = new Map([...body.rows].map((row) => [row.dataset.id, row]));
  for (const data of rows) {
    let row = existing.get(String(data[id]));
    if (!row) {
      row = body.insertRow();
      row.dataset.id = data[id];
      for (const column of columns) {
        const cell = row.insertCell();
        cell.dataset.key = column;
        if (table.querySelector(`th[data-key="${column}"]`)?.classList.contains("number")) {
          cell.className = "number";
        }
      }
      body.querySelector("[data-empty]")?.remove();
    }
    for (const column of columns) setCell(row, column, data[column]);
  }
}

function columnsOf(table) {
  return [...table.querySelectorAll("thead th[data-key]")].map((th) => th.dataset.key);
}

// A publication is every balance as stored at its boundary: both columns agree then.
function applyBalances(balances) {
  const table = document.querySelector('table[data-table="balances"]');
  if (!table) return;
  const rows = Object.entries(balances).map(([provider, value]) => ({
    provider,
    published: value,
    stored: value,
    difference: "",
  }));
  renderRows(table, rows, columnsOf(table), "provider");
}

function applySnapshot(snapshot) {
  const balances = document.querySelector('table[data-table="balances"]');
  if (balances && snapshot.balances) renderRows(balances, snapshot.balances, columnsOf(balances), "provider");
  const workers = document.querySelector('table[data-table="workers"]');
  if (workers && snapshot.workers) renderRows(workers, snapshot.workers, columnsOf(workers), "instance");
}

function liveStatus(text, state) {
  const badge = document.getElementById("live-status");
  if (!badge) return;
  badge.textContent = text;
  badge.dataset.state = state;
}

export function connectLive(topics, handlers, attempt = 0) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/live`);
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ subscribe: topics }));
    liveStatus("live", "open");
    attempt = 0;
  });
  socket.addEventListener("message", (message) => {
    const event = JSON.parse(message.data);
    // The snapshot comes once the server listens for this page: from now on nothing is missed.
    if (event.type === "snapshot") document.documentElement.dataset.live = "ready";
    handlers[event.type]?.(event);
  });
  socket.addEventListener("close", () => {
    liveStatus("reconnecting…", "closed");
    const delay = Math.min(30_000, 500 * 2 ** attempt);
    setTimeout(() => connectLive(topics, handlers, attempt + 1), delay);
  });
  return socket;
}

function startOverview() {
  if (!document.body.dataset.live) return;
  connectLive(["balances", "worker", "batch"], {
    snapshot: applySnapshot,
    balances: (event) => {
      applyBalances(event.balances);
      const last = document.getElementById("last-boundary");
      if (last) last.textContent = event.boundary;
    },
    worker: () => {}, // the next snapshot brings the workers' table up to date
    batch: (event) => {
      const counter = document.getElementById("live-batches");
      if (counter) counter.textContent = String(Number(counter.textContent || 0) + event.stored);
    },
  });
}

// The feed pages, live: when a feed is detected or takes a step (in any replica), the
// parts of the page marked data-refresh are fetched again and replaced; forms are not, so
// nothing typed is lost. The list follows every feed, a feed's page its own.

export async function refreshParts() {
  const response = await fetch(location.href, { headers: { accept: "text/html" } });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const part of document.querySelectorAll("[data-refresh]")) {
    const fresh = page.getElementById(part.id);
    if (fresh) part.replaceWith(document.importNode(fresh, true));
  }
  addCopyButtons();
  document.documentElement.dataset.refreshed = String(Number(document.documentElement.dataset.refreshed || 0) + 1);
}

function startFeedRefresh() {
  const watched = document.body.dataset.liveFeed;
  if (!watched) return;
  connectLive(["feed"], {
    feed: (event) => {
      if (watched === "all" || String(event.id) === watched) refreshParts();
    },
  });
}

// The rates explorer's chart, drawn from its table.

function drawRatesChart() {
  const table = document.querySelector("table[data-chart]");
  const holder = document.getElementById("rates-chart");
  if (!table || !holder) return;
  const points = [...table.tBodies[0].rows]
    .filter((row) => row.dataset.day)
    .map((row) => [Date.parse(`${row.dataset.day}T00:00:00Z`) / 1000, row.dataset.price ? Number(row.dataset.price) : null])
    .sort((a, b) => a[0] - b[0]);
  if (points.length === 0) return;
  const width = Math.max(320, holder.clientWidth || 640);
  // The chart is a picture of the table; the table keeps the exact figures.
  new uPlot(
    {
      width,
      height: 260,
      series: [{}, { label: "average price", stroke: "#1f5fbf", width: 2, spanGaps: false }],
      axes: [{}, { label: "price" }],
    },
    [points.map((p) => p[0]), points.map((p) => p[1])],
    holder,
  );
}

// Charts of counts over time (filtering per rule on the lineage page), drawn from their
// table: the first cell's row carries data-at (epoch seconds), each other column a series.

const PALETTE = ["#1f5fbf", "#c2410c", "#15803d", "#7c3aed", "#b91c1c", "#0e7490", "#a16207"];

function drawSeriesCharts() {
  for (const table of document.querySelectorAll('table[data-chart="series"]')) {
    const holder = document.getElementById(table.dataset.chartHolder);
    if (!holder) continue;
    const names = [...table.tHead.rows[0].cells].slice(1).map((cell) => cell.textContent.trim());
    const rows = [...table.tBodies[0].rows].filter((row) => row.dataset.at);
    if (rows.length === 0) continue;
    const times = rows.map((row) => Number(row.dataset.at));
    const series = names.map((_, i) => rows.map((row) => Number(row.cells[i + 1].textContent)));
    // The whole window on the time axis, however few buckets had anything in them.
    const since = Number(table.dataset.since) || times[0];
    const until = Number(table.dataset.until) || times[times.length - 1];
    new uPlot(
      {
        width: Math.max(320, holder.clientWidth || 640),
        height: 240,
        scales: { x: { time: true, range: () => [since, until] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
        series: [{}, ...names.map((name, i) => ({ label: name, stroke: PALETTE[i % PALETTE.length], width: 2 }))],
        axes: [{}, { label: "filtered messages" }],
      },
      [times, ...series],
      holder,
    );
  }
}

document.addEventListener("DOMContentLoaded", () => {
  addCopyButtons();
  startOverview();
  startFeedRefresh();
  drawRatesChart();
  drawSeriesCharts();
  document.documentElement.dataset.scripts = "ready";
});

// Bar charts drawn from their table (HQLA by level): each row marked data-bar is a bar,
// its length the cell marked data-bar-value; negative bars are deductions. A picture of
// the table, which keeps the exact figures.

function drawBarCharts() {
  for (const table of document.querySelectorAll('table[data-chart="bars"]')) {
    const holder = document.getElementById(table.dataset.chartHolder);
    if (!holder) continue;
    const bars = [...table.tBodies[0].rows]
      .filter((row) => row.hasAttribute("data-bar"))
      .map((row) => {
        const cell = row.querySelector("[data-bar-value]");
        return { row, label: row.cells[0].textContent.trim(), value: Number(cell?.dataset.value) || 0 };
      });
    const largest = Math.max(0, ...bars.map((bar) => Math.abs(bar.value)));
    holder.replaceChildren(
      ...bars.map(({ row, label, value }) => {
        const line = document.createElement("div");
        line.className = "bar-row";
        const name = document.createElement("span");
        name.textContent = label;
        const track = document.createElement("div");
        track.className = "bar-track";
        const fill = document.createElement("div");
        fill.className = `bar-fill${value < 0 ? " negative" : ""}${row.classList.contains("total") ? " total" : ""}`;
        fill.style.width = `${largest ? (Math.abs(value) / largest) * 100 : 0}%`; // CSSOM: allowed by the CSP
        track.append(fill);
        line.append(name, track);
        return line;
      }),
    );
  }
}

// Ratios over time (the LCR today), drawn from their table: rows carry data-at (epoch
// seconds), cells data-value (percent); the floor and the warning level as dashed lines.

function drawRatioCharts() {
  for (const table of document.querySelectorAll('table[data-chart="lcr"]')) {
    const holder = document.getElementById(table.dataset.chartHolder);
    if (!holder) continue;
    holder.replaceChildren();
    const names = [...table.tHead.rows[0].cells].slice(1).map((cell) => cell.textContent.trim());
    const rows = [...table.tBodies[0].rows].filter((row) => row.dataset.at);
    if (rows.length === 0) continue;
    const value = (text) => (text === "" || text === undefined ? null : Number(text));
    const times = rows.map((row) => Number(row.dataset.at));
    const series = names.map((_, i) => rows.map((row) => value(row.cells[i + 1].dataset.value)));
    const lines = [
      ["100 % floor", Number(table.dataset.floor), "#b42318"],
      ["warning level", Number(table.dataset.warning), "#d97706"],
    ].filter(([, level]) => Number.isFinite(level));
    const since = Number(table.dataset.since) || times[0];
    const until = Math.max(Number(table.dataset.until) || 0, times[times.length - 1]);
    const highest = Math.max(...lines.map(([, level]) => level), ...series.flat().filter((v) => v !== null));
    new uPlot(
      {
        width: Math.max(300, holder.clientWidth || 640),
        height: 240,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"), // as the table: UTC
        scales: { x: { time: true, range: () => [since, until] }, y: { range: () => [0, highest * 1.1 || 1] } },
        series: [
          {},
          ...names.map((name, i) => ({ label: name, stroke: PALETTE[i % PALETTE.length], width: 2, value: (u, v) => (v === null ? "—" : `${v} %`) })),
          ...lines.map(([label, , stroke]) => ({ label, stroke, width: 1, dash: [6, 4], points: { show: false } })),
        ],
        axes: [{}, { label: "LCR (%)", size: 60 }],
      },
      // The floor and the warning level across the whole day, not only where minutes were
      // recorded: the day's first and last moments carry them, and no ratio.
      [
        [since, ...times, until],
        ...series.map((values) => [null, ...values, null]),
        ...lines.map(([, level]) => [level, ...times.map(() => level), level]),
      ],
      holder,
    );
  }
}

// Pages that follow topics of the live feed (data-live-topics="trades lcr"): on any event
// of those, the parts marked data-refresh are fetched again (at most once a second) and
// their charts drawn again; after a reconnection too, since events may have been missed.

function throttle(work, interval) {
  let last = 0;
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(async () => {
      timer = null;
      last = Date.now();
      await work();
    }, Math.max(0, last + interval - Date.now()));
  };
}

function startTopicRefresh() {
  const topics = (document.body.dataset.liveTopics || "").split(/\s+/).filter(Boolean);
  if (topics.length === 0) return;
  const refresh = throttle(async () => {
    await refreshParts();
    drawBarCharts();
    drawRatioCharts();
  }, 1000);
  let snapshots = 0;
  const handlers = { snapshot: () => { if (snapshots++ > 0) refresh(); } };
  for (const topic of topics) handlers[topic] = refresh;
  connectLive(topics, handlers);
}

document.addEventListener("DOMContentLoaded", () => {
  drawBarCharts();
  drawRatioCharts();
  startTopicRefresh();
});
