// The dashboard: a client of the public API like any other, plain JavaScript, no build step.
// Orders come from GET /api/orders, then live from /ws/orders; a selected order's timeline
// from GET /api/orders/{id}/events merged with the live events by sequence. The running
// figures are computed here, from the orders the page knows.
"use strict";

const FINAL = new Set(["completed", "failed"]);
const VENUE_NAMES = { RAYDIUM: "Raydium", METEORA: "Meteora" };
const MAX_ORDERS = 500; // rows kept on the page; older ones fall off the end
const RATE_WINDOW_MS = 10_000;

const state = {
  orders: new Map(), // orderId -> order row (camelCase, as GET /api/orders returns)
  events: new Map(), // orderId -> Map(sequence -> timeline entry)
  submittedAt: [], // arrival times (ms) of OrderSubmitted events, for orders/s
  selected: null,
  nextCursor: null,
  socket: null,
};

const $ = (selector) => document.querySelector(selector);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// --- the API --------------------------------------------------------------------------

function apiKey() {
  return $("#api-key").value.trim();
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const reason =
      response.status === 401 || response.status === 403
        ? "the API refused the key: enter a valid API key above"
        : body.message || body.error || response.statusText;
    throw new Error(`${response.status}: ${reason}`);
  }
  return body;
}

// --- formatting -----------------------------------------------------------------------

function venueName(dex) {
  if (!dex) return "";
  return dex.split("+").map((v) => VENUE_NAMES[v] || v).join(" + ");
}

function short(value, digits = 6) {
  if (value === null || value === undefined || value === "") return "";
  const number = Number(value);
  if (!Number.isFinite(number)) return String(value);
  return number.toLocaleString(undefined, { maximumFractionDigits: digits });
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

function seconds(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

// --- running figures --------------------------------------------------------------------

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const rank = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, rank)];
}

function latencyMs(order) {
  // Submit -> completed, from the event times the log recorded (createdAt is the submission).
  if (order.status !== "completed" || !order.completedAt) return null;
  return new Date(order.completedAt) - new Date(order.createdAt);
}

function renderFigures() {
  const now = Date.now();
  state.submittedAt = state.submittedAt.filter((t) => now - t <= RATE_WINDOW_MS);
  $("#fig-rate").textContent = (state.submittedAt.length / (RATE_WINDOW_MS / 1000)).toFixed(1);

  const orders = [...state.orders.values()];
  const latencies = orders.map(latencyMs).filter((v) => v !== null).sort((a, b) => a - b);
  $("#fig-p50").textContent = seconds(percentile(latencies, 50));
  $("#fig-p99").textContent = seconds(percentile(latencies, 99));

  const wins = new Map();
  const failures = new Map();
  for (const order of orders) {
    if (order.status === "completed" && order.selectedDex) {
      const key = venueName(order.selectedDex);
      wins.set(key, (wins.get(key) || 0) + 1);
    } else if (order.status === "failed") {
      const key = order.errorCode || "UNKNOWN";
      failures.set(key, (failures.get(key) || 0) + 1);
    }
  }
  const won = [...wins.values()].reduce((a, b) => a + b, 0);
  $("#fig-venues").textContent = won
    ? [...wins].map(([venue, n]) => `${venue} ${Math.round((100 * n) / won)}%`).join(", ")
    : "–";
  $("#fig-failures").textContent = failures.size
    ? [...failures].map(([reason, n]) => `${reason} ${n}`).join(", ")
    : "none";
}

// --- the orders table ----------------------------------------------------------------------

function upsertOrder(order) {
  const known = state.orders.get(order.id) || {};
  state.orders.set(order.id, { ...known, ...order });
  if (state.orders.size > MAX_ORDERS) {
    const oldest = [...state.orders.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt))[0];
    state.orders.delete(oldest.id);
    state.events.delete(oldest.id);
  }
}

function renderOrders() {
  const rows = [...state.orders.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  const body = $("#orders tbody");
  body.replaceChildren(
    ...rows.map((order) => {
      const row = el(
        "tr",
        { dataset: { orderId: order.id }, class: order.id === state.selected ? "selected" : "" },
        el("td", { class: "id", title: order.id }, order.id.slice(0, 8)),
        el("td", {}, `${order.tokenIn || "?"} → ${order.tokenOut || "?"}`),
        el("td", {}, short(order.amount)),
        el("td", {}, el("span", { class: `status ${order.status}` }, order.status)),
        el("td", { class: "venue" }, venueName(order.selectedDex)),
        el("td", {}, short(order.amountOut)),
        el("td", {}, clock(order.updatedAt)),
      );
      row.addEventListener("click", () => select(order.id));
      return row;
    }),
  );
  $("#orders-count").textContent = `(${rows.length})`;
  $("#more").hidden = !state.nextCursor;
}

async function loadOrders(cursor) {
  const query = new URLSearchParams({ limit: "100" });
  if (cursor) query.set("cursor", cursor);
  const page = await api(`/api/orders?${query}`);
  for (const order of page.orders) {
    const row = { ...order, completedAt: order.status === "completed" ? order.updatedAt : null };
    const known = state.orders.get(order.id);
    if (known && known.sequence && !FINAL.has(order.status)) {
      // The live feed already moved this order on; the stored row is older.
      delete row.status;
      delete row.updatedAt;
    }
    upsertOrder(row);
  }
  state.nextCursor = page.nextCursor;
  render();
}

// --- live events --------------------------------------------------------------------------

// A timeline entry from either source: a socket message (fields flattened, `timestamp`) or a
// stored event (fields under `payload`, `occurredAt`).
function entryOf(source) {
  const fields = source.payload ? source.payload : source;
  return {
    sequence: source.sequence,
    type: source.type,
    status: source.status,
    at: source.timestamp || source.occurredAt,
    message: source.message || null,
    fields,
  };
}

function remember(orderId, entry) {
  if (!state.events.has(orderId)) state.events.set(orderId, new Map());
  state.events.get(orderId).set(entry.sequence, entry);
}

function applyLive(message) {
  if (message.sequence === undefined || !message.orderId) return; // "connected" and errors
  const id = message.orderId;
  const change = { id, status: message.status, updatedAt: message.timestamp };
  if (message.type === "OrderSubmitted") {
    Object.assign(change, {
      tokenIn: message.tokenIn,
      tokenOut: message.tokenOut,
      amount: message.amount,
      slippage: message.slippage,
      createdAt: message.timestamp,
    });
    state.submittedAt.push(Date.now());
  } else if (message.type === "OrderRouted") {
    change.selectedDex = message.selectedDex;
  } else if (message.type === "OrderCompleted") {
    Object.assign(change, {
      selectedDex: message.selectedDex,
      amountOut: message.amountOut,
      executedPrice: message.executedPrice,
      txHash: message.txHash,
      completedAt: message.timestamp,
    });
  } else if (message.type === "OrderFailed") {
    Object.assign(change, { errorCode: message.code, error: message.error });
  }
  const known = state.orders.get(id);
  // Events of one order arrive in sequence, but a page of the list can land after them:
  // keep the furthest status, never step back from a final one.
  if (known && (FINAL.has(known.status) || (known.sequence || 0) > message.sequence)) {
    delete change.status;
    delete change.updatedAt;
  } else {
    change.sequence = message.sequence;
  }
  upsertOrder({ createdAt: message.timestamp, ...known, ...change });
  remember(id, entryOf(message));
  render();
}

function connectFeed() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // Browsers cannot set headers on a socket: the key travels as the subprotocols ["bearer", key].
  const protocols = apiKey() ? ["bearer", apiKey()] : [];
  const socket = new WebSocket(`${scheme}://${location.host}/ws/orders`, protocols);
  state.socket = socket;
  const badge = $("#feed-state");
  socket.addEventListener("open", () => {
    badge.dataset.state = "live";
    badge.textContent = "live";
  });
  socket.addEventListener("message", (event) => applyLive(JSON.parse(event.data)));
  socket.addEventListener("close", () => {
    badge.dataset.state = "down";
    badge.textContent = "reconnecting…";
    // Events missed while away are in the read model: reload the first page, then go live again.
    setTimeout(() => {
      connectFeed();
      loadOrders().catch(showError);
    }, 2000);
  });
}

// --- the timeline -------------------------------------------------------------------------

async function select(orderId, { history = true } = {}) {
  state.selected = orderId;
  render();
  if (!history) return;
  try {
    const stored = await api(`/api/orders/${orderId}/events`);
    for (const event of stored.events) remember(orderId, entryOf(event));
  } catch (error) {
    // Right after a submission the projector may not have stored the order yet; the live
    // feed fills the timeline meanwhile.
    if (!String(error.message).startsWith("404")) showError(error);
  }
  render();
}

function quotesTable(entry) {
  const quotes = entry.fields.quotes || [];
  const plan = entry.fields.plan || entry.fields.route || {};
  const chosen = new Set((plan.legs || []).map((leg) => leg.venue));
  return el(
    "table",
    { class: "quotes" },
    el("thead", {}, el("tr", {}, ...["Venue", "Amount out", "Fee", "Price impact", ""].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      ...quotes.map((q) =>
        el(
          "tr",
          { class: chosen.has(q.venue) ? "chosen" : "", dataset: { venue: q.venue } },
          el("td", {}, VENUE_NAMES[q.venue] || q.venue),
          el("td", {}, q.error ? `error: ${q.error}` : short(q.amountOut)),
          el("td", {}, short(q.fee)),
          el("td", {}, short(q.priceImpact, 8)),
          el("td", {}, chosen.has(q.venue) ? "chosen" : ""),
        ),
      ),
    ),
  );
}

function detailOf(entry) {
  const f = entry.fields;
  switch (entry.type) {
    case "OrderSubmitted":
      return `${short(f.amount)} ${f.tokenIn} → ${f.tokenOut}, slippage ${f.slippage}`;
    case "OrderRouted": {
      const plan = f.plan || f.route || {};
      const gain = Number(plan.splitImprovementBps || 0);
      return el(
        "div",
        {},
        `${plan.kind || "route"} via ${[...new Set((plan.legs || []).map((l) => venueName(l.venue)))].join(" + ")}: ` +
          `${f.reason}; expect ${short(plan.amountOut)}, at least ${short(plan.minAmountOut)}` +
          (gain ? `, split gains ${short(gain, 2)} bps` : ""),
        quotesTable(entry),
      );
    }
    case "TransactionBuilt":
      return `attempt ${f.attempt}, min out ${short(f.minAmountOut)}`;
    case "TransactionSubmitted":
      return `signature ${f.txHash}`;
    case "OrderRetrying":
      return `${f.code}: ${f.error}; next attempt in ${f.delaySeconds} s`;
    case "OrderCompleted":
      return `filled on ${venueName(f.selectedDex)}: ${short(f.amountIn)} in, ${short(f.amountOut)} out at ${short(f.executedPrice)}, fee ${short(f.fee)}`;
    case "OrderFailed":
      return `${f.code}: ${f.error} after ${f.attempts} attempt(s)`;
    default:
      return "";
  }
}

function renderTimeline() {
  const id = state.selected;
  $("#timeline-order").textContent = id || "select an order";
  const entries = id ? [...(state.events.get(id) || new Map()).values()] : [];
  entries.sort((a, b) => a.sequence - b.sequence);
  const first = entries.length ? new Date(entries[0].at) : null;
  $("#timeline-events").replaceChildren(
    ...entries.map((entry) => {
      const offset = first ? `+${seconds(new Date(entry.at) - first)}` : "";
      const detail = detailOf(entry);
      return el(
        "li",
        { dataset: { type: entry.type, status: entry.status, sequence: String(entry.sequence) } },
        el("strong", {}, `${entry.sequence}. ${entry.status}`),
        el("span", { class: "when" }, `${clock(entry.at)} ${offset}`),
        el("div", { class: "detail" }, detail),
      );
    }),
  );
}

function render() {
  renderOrders();
  renderTimeline();
  renderFigures();
}

// --- the form -----------------------------------------------------------------------------

function showError(error) {
  const result = $("#submit-result");
  result.className = "result error";
  result.textContent = error.message;
}

async function submitOrder(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = {
    tokenIn: form.get("tokenIn").trim().toUpperCase(),
    tokenOut: form.get("tokenOut").trim().toUpperCase(),
    amount: form.get("amount").trim(),
  };
  const slippage = form.get("slippage").trim();
  if (slippage) body.slippage = slippage;
  const result = $("#submit-result");
  try {
    const accepted = await api("/api/orders/execute", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    result.className = "result";
    result.textContent = `Accepted: ${accepted.orderId}`;
    if (!state.orders.has(accepted.orderId)) {
      const now = new Date().toISOString();
      upsertOrder({ id: accepted.orderId, ...body, status: accepted.status, createdAt: now, updatedAt: now });
    }
    // Its events arrive on the live feed, which was open before the submission; the stored
    // history would only answer 404 until the projector catches up.
    const live = state.socket && state.socket.readyState === WebSocket.OPEN;
    await select(accepted.orderId, { history: !live });
  } catch (error) {
    showError(error);
  }
}

// --- start ----------------------------------------------------------------------------------

function start() {
  const key = $("#api-key");
  key.value = localStorage.getItem("oee.apiKey") || "";
  key.addEventListener("change", () => {
    localStorage.setItem("oee.apiKey", apiKey());
    // The socket reconnects (with the new key) when closed, and reloads the orders.
    if (state.socket) state.socket.close();
    else loadOrders().catch(showError);
  });
  $("#order-form").addEventListener("submit", submitOrder);
  $("#more").addEventListener("click", () => loadOrders(state.nextCursor).catch(showError));
  connectFeed();
  loadOrders().catch(showError);
  setInterval(renderFigures, 1000);
}

document.addEventListener("DOMContentLoaded", start);
