// The broker's dashboard: polls GET /topics every second, turns counter deltas into
// rates, and draws the last minute of each figure per topic on canvas line charts.
// Plain JavaScript, no library and no build step; `window.mycelium` holds what is shown.
"use strict";

const PERIOD_MS = 1000;
const WINDOW_S = 60;
const PALETTE = ["#2f7d4f", "#1f5fa8", "#c2571a", "#8e3fa8", "#b3261e", "#1b8a8a",
  "#7a6a12", "#5a5a5a", "#d0448a", "#3f8e1f"];

const state = {
  // name -> the last /topics object of that topic
  topics: new Map(),
  // name -> {published, delivered, dropped, lag, latency}: arrays of [seconds, value]
  history: new Map(),
  // name -> {published, delivered, dropped}: the last rates, messages per second
  rates: new Map(),
  previous: null,
  colors: new Map(),
  polls: 0,
};
window.mycelium = state;

function colorOf(name) {
  if (!state.colors.has(name)) {
    state.colors.set(name, PALETTE[state.colors.size % PALETTE.length]);
  }
  return state.colors.get(name);
}

function push(series, t, value) {
  series.push([t, value]);
  while (series.length > 0 && series[0][0] < t - WINDOW_S) series.shift();
}

// One poll's figures: rates from the counters' change since the last poll.
function record(topics, now) {
  const t = now / 1000;
  const names = new Set();
  for (const topic of topics) {
    names.add(topic.name);
    state.topics.set(topic.name, topic);
    if (!state.history.has(topic.name)) {
      state.history.set(topic.name, { published: [], delivered: [], dropped: [], lag: [], latency: [] });
    }
    const history = state.history.get(topic.name);
    const before = state.previous && state.previous.topics.get(topic.name);
    const seconds = state.previous ? (now - state.previous.at) / 1000 : 0;
    const rate = (field) => {
      if (!before || seconds <= 0) return 0;
      return Math.max(0, topic[field] - before[field]) / seconds;
    };
    const rates = { published: rate("published"), delivered: rate("delivered"), dropped: rate("dropped") };
    state.rates.set(topic.name, rates);
    push(history.published, t, rates.published);
    push(history.delivered, t, rates.delivered);
    push(history.dropped, t, rates.dropped);
    // The slowest socket or in-process subscriber's queue, or a queue topic's backlog.
    push(history.lag, t, Math.max(topic.queued || 0, lagOf(topic) || 0));
    const p99 = topic.latency && topic.latency.p99_us;
    if (p99 !== null && p99 !== undefined) push(history.latency, t, p99);
  }
  for (const name of [...state.topics.keys()]) {
    if (!names.has(name)) {
      state.topics.delete(name);
      state.history.delete(name);
      state.rates.delete(name);
    }
  }
  state.previous = { at: now, topics: new Map(topics.map((topic) => [topic.name, topic])) };
}

// Messages queued toward the topic's slowest socket or in-process subscriber, if any.
function lagOf(topic) {
  return topic.lag && topic.lag.messages !== null ? topic.lag.messages : null;
}

function formatRate(value) {
  if (value >= 100) return Math.round(value).toLocaleString("en");
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function renderTable() {
  const body = document.querySelector("#topics tbody");
  const rows = [];
  const names = [...state.topics.keys()].sort();
  for (const name of names) {
    const topic = state.topics.get(name);
    const rates = state.rates.get(name) || { published: 0, delivered: 0 };
    const row = document.createElement("tr");
    row.dataset.topic = name;
    const label = cell(row, name, "name");
    label.style.setProperty("--swatch", colorOf(name));
    cell(row, topic.routing, "routing");
    cell(row, topic.dynamic ? "dynamic" : "declared", "kind");
    cell(row, String(topic.subscribers), "subscribers");
    cell(row, String(topic.shm_subscribers), "shm");
    cell(row, formatRate(rates.published), "rate");
    cell(row, formatRate(rates.delivered), "delivered-rate");
    cell(row, topic.published.toLocaleString("en"), "published");
    cell(row, topic.delivered.toLocaleString("en"), "delivered");
    cell(row, topic.dropped.toLocaleString("en"), "dropped");
    cell(row, topic.queued.toLocaleString("en"), "queued");
    const lag = lagOf(topic);
    cell(row, lag === null ? "-" : lag.toLocaleString("en"), "lag");
    const shmLag = topic.lag ? topic.lag.shm_bytes : null;
    cell(row, shmLag === null || shmLag === undefined ? "-" : shmLag.toLocaleString("en"), "shm-lag");
    const p99 = topic.latency ? topic.latency.p99_us : null;
    cell(row, p99 === null || p99 === undefined ? "-" : formatRate(p99), "latency");
    rows.push(row);
  }
  body.replaceChildren(...rows);
  document.getElementById("empty").hidden = names.length > 0;
}

// The smallest 1, 2 or 5 times a power of ten at or above `value`.
function niceCeiling(value) {
  if (value <= 0) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function drawChart(canvas, field, now) {
  const context = canvas.getContext("2d");
  const width = canvas.width;
  const height = canvas.height;
  const left = 56, right = 10, top = 10, bottom = 24;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  context.clearRect(0, 0, width, height);
  const end = now / 1000;
  const start = end - WINDOW_S;
  let max = 0;
  for (const history of state.history.values()) {
    for (const [, value] of history[field]) max = Math.max(max, value);
  }
  const ceiling = niceCeiling(max);
  const x = (t) => left + ((t - start) / WINDOW_S) * plotWidth;
  const y = (v) => top + plotHeight - (v / ceiling) * plotHeight;

  context.font = "11px system-ui, sans-serif";
  context.fillStyle = "#6b756f";
  context.strokeStyle = "#dfe3df";
  context.lineWidth = 1;
  context.textAlign = "right";
  context.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const value = (ceiling * i) / 4;
    const py = Math.round(y(value)) + 0.5;
    context.beginPath();
    context.moveTo(left, py);
    context.lineTo(width - right, py);
    context.stroke();
    context.fillText(formatRate(value), left - 6, py);
  }
  context.textAlign = "center";
  context.textBaseline = "top";
  for (let s = 0; s <= WINDOW_S; s += 15) {
    context.fillText(s === 0 ? "now" : `-${s}s`, x(end - s), height - bottom + 6);
  }

  context.lineWidth = 2;
  context.lineJoin = "round";
  for (const [name, history] of state.history) {
    const points = history[field];
    if (points.length === 0) continue;
    context.strokeStyle = colorOf(name);
    context.beginPath();
    points.forEach(([t, value], i) => {
      const px = x(t);
      const py = y(value);
      if (i === 0) context.moveTo(px, py);
      else context.lineTo(px, py);
    });
    context.stroke();
  }
}

function render(now) {
  renderTable();
  for (const field of ["published", "delivered", "dropped", "lag", "latency"]) {
    const canvas = document.getElementById(`chart-${field}`);
    if (canvas) drawChart(canvas, field, now);
  }
}

function setStatus(text, down) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("down", down);
}

async function poll() {
  try {
    const response = await fetch("/topics", { cache: "no-store" });
    if (!response.ok) throw new Error(`GET /topics answered ${response.status}`);
    const body = await response.json();
    const now = Date.now();
    record(body.topics || [], now);
    state.polls += 1;
    render(now);
    setStatus(`${state.topics.size} topic(s), updated ${new Date(now).toLocaleTimeString()}`, false);
  } catch (error) {
    setStatus(`broker unreachable: ${error.message}`, true);
  }
}

poll();
setInterval(poll, PERIOD_MS);
