// The dashboard: a client of the public API like any other, plain JavaScript, no build step.
// Orders come from GET /api/orders, then live from /ws/orders; a selected order's timeline
// from GET /api/orders/{id}/events merged with the live events by sequence. The running
// figures are computed here, from the orders the page knows. Markets: the list from
// GET /api/markets, a chart per pair (the vendored lightweight-charts, ui/vendor/): candles from
// GET /api/markets/{pair}/candles, each venue's mid live from WS /ws/markets/{pair}, the engine's
// fills from GET /api/markets/{pair}/trades (source "engine"), open conditional orders' prices
// as horizontal lines. Launches: GET /api/launches (the API's fold of chain.events) and the
// snipers among the orders (armed, triggered, filled or failed with the rug-check code); a
// launched pair is charted from the market endpoints once they know it, and its snipers' fills
// are drawn from their orders either way. Opened without a key on an API that needs one, the page says how to get
// one instead of trying (and failing) to connect; `#key=...` in the URL signs it in.
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
  authRequired: false, // from GET /health: does this API need a key?
  termsAsked: new Set(), // snipers whose terms were asked of their OrderSubmitted
  started: false,
};

const market = {
  pair: "SOL-USDC",
  interval: "1s",
  markets: new Map(), // pair -> GET /api/markets line
  chart: null,
  candles: null, // the candlestick series
  lines: new Map(), // venue -> its mid's line series
  markers: null, // the engine's fills on the candles
  priceLines: [], // open conditional orders' prices on the candles
  levels: [], // those prices, for the price scale
  lastCandle: null, // start (unix seconds) of the newest candle drawn
  socket: null,
  lastTick: null, // the newest tick of the charted pair
  conditional: [], // open conditional orders (GET /api/orders?status=open|partiallyFilled)
  launches: new Map(), // symbol -> GET /api/launches line
  snipeFills: null, // the snipers' fills on the chart (points, from their orders)
  generation: 0, // bumped on every pair/interval change: late answers for the old one are dropped
};
const VENUE_COLORS = { RAYDIUM: "#7c3aed", METEORA: "#d97706" };
const INTERVAL_SECONDS = { "1s": 1, "1m": 60, "1h": 3600 };
// A sniper's terms: on its row (read model since migration 0011) or in its OrderSubmitted.
const SNIPER_TERMS = ["orderType", "maxPrice", "checks", "onlyAtLaunch", "autoSell", "priority"];

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

// A price to 6 significant digits: a new token's (0.000000201 SOL) stays readable.
function priceText(value) {
  const number = Number(value);
  if (!Number.isFinite(number)) return String(value);
  if (Math.abs(number) >= 1) return short(number, 6);
  return number.toLocaleString(undefined, { maximumSignificantDigits: 6 });
}
// The price scale's step: fine enough for a launched token's price.
const PRICE_FORMAT = { type: "custom", formatter: priceText, minMove: 1e-12 };

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
    for (const name of SNIPER_TERMS) {
      if (message[name] !== undefined && message[name] !== null) change[name] = message[name];
    }
    state.submittedAt.push(Date.now());
  } else if (message.type === "OrderRouted") {
    change.selectedDex = message.selectedDex;
  } else if (message.type === "OrderCompleted") {
    setTimeout(() => loadFills(market.generation).catch(chartError), 1500); // once projected
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
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return; // replaced by a newer socket
    if (event.code === 4401 || event.code === 4403) {
      // Refused, not lost: retrying with the same key would only be refused again.
      state.socket = null;
      showSignIn(true, "The API refused the key this page has: paste a valid one above.");
      return;
    }
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
  renderSnipers();
  drawSnipeFills();
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

// --- markets: the list ----------------------------------------------------------------------

const VENUES = ["RAYDIUM", "METEORA"];

function percent(fraction) {
  if (fraction === null || fraction === undefined) return "";
  const value = Number(fraction) * 100;
  return `${value > 0 ? "+" : ""}${value.toFixed(2)}%`;
}

function renderMarkets() {
  const body = $("#markets tbody");
  body.replaceChildren(
    ...[...market.markets.values()].map((m) => {
      const mids = Object.fromEntries((m.venues || []).map((v) => [v.venue, v.mid]));
      const best = m.bestVenue || {};
      const change = m.change24h === null ? null : Number(m.change24h);
      const row = el(
        "tr",
        { dataset: { pair: m.pair }, class: m.pair === market.pair ? "selected" : "" },
        el("td", {}, m.pair),
        ...VENUES.map((venue) => el("td", { class: `mid ${venue.toLowerCase()}` }, short(mids[venue]))),
        el("td", { class: "best-sell" }, VENUE_NAMES[best.sell] || "–"),
        el("td", { class: "best-buy" }, VENUE_NAMES[best.buy] || "–"),
        el("td", { class: change > 0 ? "up" : change < 0 ? "down" : "" }, percent(m.change24h)),
        el("td", {}, (m.display && m.display.volume24h) || ""),
      );
      row.addEventListener("click", () => selectPair(m.pair));
      return row;
    }),
  );
}

async function loadMarkets() {
  const body = await api("/api/markets");
  const wasLaunchedOnly = launchedOnly(market.pair);
  for (const line of body.markets) market.markets.set(line.pair, line);
  renderMarkets();
  if (wasLaunchedOnly && market.markets.has(market.pair)) selectPair(market.pair);
}

// --- markets: the chart ----------------------------------------------------------------------

function chartError(error) {
  const status = $("#chart-status");
  status.className = "result error";
  status.textContent = error.message;
}

function unixSeconds(iso) {
  return Math.floor(new Date(iso).getTime() / 1000);
}

function chartCounts() {
  const node = $("#chart");
  return {
    set(name, value) {
      node.dataset[name] = String(value);
    },
    add(name, n = 1) {
      node.dataset[name] = String(Number(node.dataset[name] || 0) + n);
    },
  };
}

function makeChart() {
  if (market.chart) return true;
  const charts = window.LightweightCharts;
  if (!charts) {
    chartError(new Error("the chart library did not load (/ui/vendor/)"));
    return false;
  }
  const chart = charts.createChart($("#chart"), {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#1d2330" },
    grid: { vertLines: { color: "#eef0f3" }, horzLines: { color: "#eef0f3" } },
    timeScale: { timeVisible: true, secondsVisible: true },
    localization: { priceFormatter: priceText },
  });
  market.candles = chart.addSeries(charts.CandlestickSeries, {
    autoscaleInfoProvider: withOrderLevels,
    priceFormat: PRICE_FORMAT,
    upColor: "#13795b",
    downColor: "#b42318",
    wickUpColor: "#13795b",
    wickDownColor: "#b42318",
    borderVisible: false,
  });
  for (const venue of VENUES) {
    market.lines.set(
      venue,
      chart.addSeries(charts.LineSeries, {
        color: VENUE_COLORS[venue],
        lineWidth: 1,
        title: VENUE_NAMES[venue],
        priceLineVisible: false,
        lastValueVisible: true,
      }),
    );
  }
  market.markers = charts.createSeriesMarkers(market.candles, []);
  market.snipeFills = chart.addSeries(charts.LineSeries, {
    color: "#0e7490",
    lineVisible: false,
    pointMarkersVisible: true,
    pointMarkersRadius: 4,
    priceLineVisible: false,
    lastValueVisible: false,
    title: "snipes",
    priceFormat: PRICE_FORMAT,
  });
  market.chart = chart;
  return true;
}

// Open orders' prices widen the price scale so their lines are in view, unless one is so far
// off (over 20 % from the candles) that the candles would flatten: the table lists it anyway.
const LEVELS_IN_VIEW = 0.2;

function withOrderLevels(original) {
  const found = original();
  if (!found || !found.priceRange || !market.levels.length) return found;
  let { minValue, maxValue } = found.priceRange;
  const middle = (minValue + maxValue) / 2;
  for (const level of market.levels) {
    if (Math.abs(level / middle - 1) > LEVELS_IN_VIEW) continue;
    minValue = Math.min(minValue, level);
    maxValue = Math.max(maxValue, level);
  }
  return { ...found, priceRange: { minValue, maxValue } };
}

function candleOf(row) {
  return {
    time: unixSeconds(row.start),
    open: Number(row.open),
    high: Number(row.high),
    low: Number(row.low),
    close: Number(row.close),
  };
}

async function loadCandles(generation) {
  if (launchedOnly(market.pair)) return; // not in the market data (yet): it would 404
  const query = new URLSearchParams({ interval: market.interval });
  if (market.lastCandle !== null) query.set("from", new Date(market.lastCandle * 1000).toISOString());
  const body = await api(`/api/markets/${market.pair}/candles?${query}`);
  if (generation !== market.generation) return;
  const rows = body.candles.map(candleOf);
  if (market.lastCandle === null) {
    market.candles.setData(rows);
  } else {
    for (const row of rows) if (row.time >= market.lastCandle) market.candles.update(row);
  }
  if (rows.length) market.lastCandle = rows[rows.length - 1].time;
  chartCounts().set("candles", market.candles.data().length);
  if (market.candles.data().length) clearNote();
  else noTradesYet();
  chartCounts().set("lastCandle", market.lastCandle === null ? "" : market.lastCandle);
}

async function loadFills(generation) {
  if (!market.markers || launchedOnly(market.pair)) return;
  const body = await api(`/api/markets/${market.pair}/trades?limit=1000`);
  if (generation !== market.generation) return;
  const step = INTERVAL_SECONDS[market.interval];
  const fills = body.trades
    .filter((t) => t.source === "engine")
    .map((t) => ({
      // On the candle the fill is in: markers sit on bars.
      time: Math.floor(unixSeconds(t.at) / step) * step,
      position: t.side === "sell" ? "aboveBar" : "belowBar",
      shape: t.side === "sell" ? "arrowDown" : "arrowUp",
      color: t.side === "sell" ? "#b42318" : "#13795b",
      text: `engine ${t.side} ${short(t.amountBase)} @ ${short(t.price)}`,
    }))
    .sort((a, b) => a.time - b.time);
  market.markers.setMarkers(fills);
  chartCounts().set("markers", fills.length);
}

function applyTick(tick) {
  if (tick.type !== "tick" || tick.pair !== market.pair) return; // "connected", errors
  market.lastTick = tick;
  const time = unixSeconds(tick.at);
  for (const venue of tick.venues) {
    const line = market.lines.get(venue.venue);
    if (!line) continue;
    const data = line.data();
    if (data.length && data[data.length - 1].time > time) continue; // never step back in time
    line.update({ time, value: Number(venue.mid) });
  }
  const known = market.markets.get(tick.pair);
  if (known) {
    known.venues = tick.venues;
    renderMarkets();
  }
  chartCounts().add("ticks");
  chartCounts().set("sequence", tick.sequence);
  renderConditional();
}

function connectMarket(generation) {
  if (market.socket) market.socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const protocols = apiKey() ? ["bearer", apiKey()] : [];
  const socket = new WebSocket(`${scheme}://${location.host}/ws/markets/${market.pair}`, protocols);
  market.socket = socket;
  socket.addEventListener("message", (event) => applyTick(JSON.parse(event.data)));
  socket.addEventListener("close", () => {
    if (market.socket !== socket || generation !== market.generation) return;
    // Ticks missed while away: the lines resume from the next one, the candles from the API.
    setTimeout(() => {
      if (generation === market.generation) connectMarket(generation);
    }, 2000);
  });
}

async function selectPair(pair) {
  if (!makeChart()) return;
  market.generation += 1;
  const generation = market.generation;
  market.pair = pair;
  market.lastCandle = null;
  market.lastTick = null;
  $("#chart-pair").textContent = pair;
  $("#chart-status").textContent = "";
  $("#chart-status").className = "result";
  delete $("#chart-status").dataset.note;
  for (const line of market.lines.values()) line.setData([]);
  market.candles.setData([]);
  market.markers.setMarkers([]);
  chartCounts().set("ticks", 0);
  chartCounts().set("candles", 0);
  chartCounts().set("markers", 0);
  renderMarkets();
  renderLaunches();
  drawSnipeFills();
  if (launchedOnly(pair)) {
    // The market endpoints do not know this pair yet: no socket, no candles; its snipers'
    // fills and max prices still show.
    if (market.socket) market.socket.close();
    market.socket = null;
    noTradesYet();
    try {
      await loadConditional();
    } catch (error) {
      chartError(error);
    }
    return;
  }
  connectMarket(generation);
  try {
    await loadCandles(generation);
    await loadFills(generation);
    await loadConditional();
    market.chart.timeScale().scrollToRealTime();
  } catch (error) {
    chartError(error);
  }
}

// --- markets: open conditional orders ---------------------------------------------------------

function levelsOf(order) {
  const named = [
    ["limit", order.limitPrice],
    ["trigger", order.triggerPrice],
    ["take profit", order.takeProfitPrice],
    ["stop loss", order.stopLossPrice],
    ["max price", order.maxPrice],
  ];
  return named.filter(([, price]) => price !== null && price !== undefined);
}

// An order's prices are tokenOut per tokenIn; the chart's are quote per base.
// A sniper's maxPrice is tokenIn (the quote) per tokenOut (the new token): already the chart's.
function onChart(order, price) {
  if (order.orderType === "sniper") return Number(price);
  const [base] = market.pair.split("-");
  return order.tokenIn === base ? Number(price) : 1 / Number(price);
}

// The price the order waits on now: selling the base gets the highest venue mid, buying it pays
// the lowest (as the trigger engine reads a tick), in the chart's terms.
function priceNow(order) {
  const tick = market.lastTick;
  if (!tick || !tick.venues.length) return null;
  const mids = tick.venues.map((v) => Number(v.mid));
  const [base] = market.pair.split("-");
  return order.tokenIn === base ? Math.max(...mids) : Math.min(...mids);
}

function ofPair(order) {
  const [base, quote] = market.pair.split("-");
  return (
    (order.tokenIn === base && order.tokenOut === quote) ||
    (order.tokenIn === quote && order.tokenOut === base)
  );
}

function renderConditional() {
  const orders = market.conditional.filter(ofPair);
  const [base] = market.pair.split("-");
  $("#conditional tbody").replaceChildren(
    ...orders.map((order) => {
      const now = priceNow(order);
      const levels = levelsOf(order);
      const distances = levels.map(([name, price]) => {
        if (now === null) return "";
        const level = onChart(order, price);
        return `${name} ${percent((level - now) / now)}`;
      });
      return el(
        "tr",
        { dataset: { orderId: order.id } },
        el("td", { class: "id", title: order.id }, order.id.slice(0, 8)),
        el("td", {}, order.orderType + (order.trailingBps ? ` ${order.trailingBps} bps` : "")),
        el("td", {}, order.tokenIn === base ? `sell ${base}` : `buy ${base}`),
        el("td", {}, `${short(order.amount)} ${order.tokenIn}`),
        el("td", {}, levels.map(([name, price]) => `${name} ${priceText(onChart(order, price))}`).join(", ")),
        el("td", {}, now === null ? "" : priceText(now)),
        el("td", { class: "distance" }, distances.join(", ")),
      );
    }),
  );
  $("#conditional-count").textContent = `(${orders.length})`;
}

function drawOrderLines() {
  if (!market.candles) return;
  for (const line of market.priceLines) market.candles.removePriceLine(line);
  market.priceLines = [];
  market.levels = [];
  for (const order of market.conditional.filter(ofPair)) {
    for (const [name, price] of levelsOf(order)) {
      market.levels.push(onChart(order, price));
      market.priceLines.push(
        market.candles.createPriceLine({
          price: onChart(order, price),
          color: name.includes("stop") ? "#b42318" : "#3556d6",
          lineWidth: 1,
          lineStyle: window.LightweightCharts.LineStyle.Dashed,
          axisLabelVisible: true,
          title: `${order.id.slice(0, 8)} ${name}`,
        }),
      );
    }
  }
  chartCounts().set("lines", market.priceLines.length);
}

async function loadConditional() {
  const found = [];
  for (const status of ["open", "partiallyFilled"]) {
    const page = await api(`/api/orders?${new URLSearchParams({ status, limit: "100" })}`);
    found.push(...page.orders);
  }
  market.conditional = found.filter((o) => o.orderType && o.orderType !== "market").map(withTerms);
  renderConditional();
  drawOrderLines();
}

// --- launches and snipers ------------------------------------------------------------------------

function launchOf(pair) {
  return [...market.launches.values()].find((launch) => launch.pair === pair) || null;
}

// A launched pair the market endpoints do not list (yet): charting it from them would only 404.
function launchedOnly(pair) {
  return !market.markets.has(pair) && launchOf(pair) !== null;
}

function utcClock(iso) {
  return iso ? new Date(iso).toISOString().slice(11, 19) : "";
}

function clearNote() {
  const status = $("#chart-status");
  if (status.dataset.note !== "no-trades") return;
  delete status.dataset.note;
  status.textContent = "";
}

// The chart of a pair with no candles: say so, rather than show an empty grid.
function noTradesYet() {
  const status = $("#chart-status");
  if (status.className.includes("error")) return;
  const launch = launchOf(market.pair);
  let text = `No trades yet on ${market.pair}`;
  if (launch && !launch.opened) text += `: its pool opens at ${utcClock(launch.openAt)} UTC (chain clock)`;
  else if (launch && snipeFillsOf(market.pair).length) text += " in the market data; dots: the snipers' fills";
  status.dataset.note = "no-trades";
  status.textContent = text;
}

async function loadLaunches() {
  const body = await api("/api/launches");
  market.launches = new Map(body.launches.map((launch) => [launch.symbol, launch]));
  renderLaunches();
  renderSnipers();
  if (launchedOnly(market.pair)) noTradesYet();
}

function authorityCell(holder, name) {
  if (holder === null || holder === undefined) return el("td", { class: `safe ${name}` }, "renounced");
  return el("td", { class: `kept ${name}`, title: holder }, `kept (${holder.slice(0, 8)}…)`);
}

function renderLaunches() {
  const launches = [...market.launches.values()];
  $("#launches tbody").replaceChildren(
    ...launches.map((launch) => {
      const stateName = launch.opened ? "open" : launch.pool ? "created" : "minted";
      const row = el(
        "tr",
        {
          dataset: { symbol: launch.symbol, pair: launch.pair || "", state: stateName },
          class: launch.pair && launch.pair === market.pair ? "selected" : "",
        },
        el("td", {}, launch.pair || launch.symbol),
        el("td", {}, VENUE_NAMES[launch.venue] || launch.venue || ""),
        el("td", { class: "id", title: launch.pool || "" }, launch.pool ? `${launch.pool.slice(0, 8)}…` : "not created yet"),
        el("td", { class: "opens" }, utcClock(launch.openAt)),
        el(
          "td",
          { class: "state" },
          launch.opened
            ? `open since slot ${launch.openedSlot}`
            : launch.pool
              ? "pool created, not open yet"
              : "token minted, no pool yet",
        ),
        el("td", { class: "liquidity" }, launch.quote ? `${short(launch.quoteLiquidity)} ${launch.quote}` : ""),
        authorityCell(launch.mintAuthority, "mint"),
        authorityCell(launch.freezeAuthority, "freeze"),
        launch.lpBurned === null
          ? el("td", { class: "lp" }, launch.pool ? "no LP token" : "")
          : el("td", { class: launch.lpBurned ? "safe lp" : "kept lp" }, launch.lpBurned ? "burned" : `kept (${short(launch.lpSupply, 0)} units)`),
      );
      if (launch.pair) row.addEventListener("click", () => selectPair(launch.pair));
      return row;
    }),
  );
  $("#launches-empty").hidden = launches.length > 0;
}

// A sniper's life in the words of the issue: armed until its launch, triggered while it buys.
function sniperStatus(order) {
  switch (order.status) {
    case "open":
      return "armed";
    case "completed":
      return "filled";
    case "failed":
    case "cancelled":
    case "expired":
      return order.status;
    default:
      return "triggered"; // triggered, then routing .. submitted: the buy under way
  }
}

function checksText(checks, quote) {
  if (!checks) return "";
  const wanted = [];
  if (checks.mintRenounced) wanted.push("mint renounced");
  if (checks.freezeRenounced) wanted.push("freeze renounced");
  if (checks.lpBurned) wanted.push("LP burned");
  if (checks.minLiquidity !== null && checks.minLiquidity !== undefined) {
    wanted.push(`liquidity ≥ ${short(checks.minLiquidity)} ${quote}`);
  }
  return wanted.join(", ") || "none";
}

// What the sniper paid per token: tokenIn (the quote) per tokenOut, as its maxPrice.
function paidPerToken(order) {
  return Number(order.amount) / Number(order.amountOut);
}

function sniperDetail(order) {
  if (order.status === "failed") return order.error || order.errorCode || ""; // names each check
  if (order.status === "completed") {
    return `bought ${short(order.amountOut)} ${order.tokenOut} at ${priceText(paidPerToken(order))} ${order.tokenIn} each on ${venueName(order.selectedDex)}`;
  }
  if (order.status === "open") {
    const launch = market.launches.get(order.tokenOut);
    return launch && launch.pool ? `waiting for ${launch.pair}` : `waiting for ${order.tokenOut} to launch`;
  }
  return order.status === "triggered" ? "waiting for the pool to open" : `buying (${order.status})`;
}

// Rows from GET /api/orders before migration 0011 lack a sniper's terms: its submission has them.
function askSniperTerms(order) {
  if (order.maxPrice !== undefined && order.maxPrice !== null) return;
  if (state.termsAsked.has(order.id)) return;
  state.termsAsked.add(order.id);
  api(`/api/orders/${order.id}/events`)
    .then((body) => {
      const submitted = body.events.find((event) => event.type === "OrderSubmitted");
      const known = state.orders.get(order.id);
      if (!submitted || !known) return;
      const terms = {};
      for (const name of SNIPER_TERMS) {
        if (known[name] == null && submitted.payload[name] != null) terms[name] = submitted.payload[name];
      }
      upsertOrder({ ...known, ...terms });
      renderSnipers();
    })
    .catch(showError);
}

function withTerms(order) {
  const known = state.orders.get(order.id) || {};
  const terms = {};
  for (const name of SNIPER_TERMS) {
    if (order[name] == null && known[name] != null) terms[name] = known[name];
  }
  return { ...order, ...terms };
}

function renderSnipers() {
  const snipers = [...state.orders.values()]
    .filter((order) => order.orderType === "sniper")
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  $("#snipers tbody").replaceChildren(
    ...snipers.map((order) => {
      askSniperTerms(order);
      const status = sniperStatus(order);
      return el(
        "tr",
        { dataset: { orderId: order.id, status } },
        el("td", { class: "id", title: order.id }, order.id.slice(0, 8)),
        el("td", {}, order.tokenOut),
        el("td", {}, `${short(order.amount)} ${order.tokenIn}`),
        el("td", { class: "max-price" }, order.maxPrice ? `${priceText(order.maxPrice)} ${order.tokenIn}` : ""),
        el("td", { class: "checks" }, checksText(order.checks, order.tokenIn)),
        el(
          "td",
          {},
          el("span", { class: `status ${status}` }, status === "failed" && order.errorCode ? `failed ${order.errorCode}` : status),
        ),
        el("td", { class: "detail" }, sniperDetail(order)),
      );
    }),
  );
  $("#snipers-count").textContent = `(${snipers.length})`;
}

function snipeFillsOf(pair) {
  const [base, quote] = pair.split("-");
  return [...state.orders.values()].filter(
    (order) =>
      order.orderType === "sniper" &&
      order.status === "completed" &&
      order.tokenOut === base &&
      order.tokenIn === quote &&
      Number(order.amountOut) > 0,
  );
}

// The snipers' fills on the launched pair's chart, from their orders: a point per second (the
// mean price of the fills in it), so they show even before the market data has the pair.
function drawSnipeFills() {
  if (!market.snipeFills) return;
  const fills = snipeFillsOf(market.pair);
  const bySecond = new Map();
  for (const order of fills) {
    const time = unixSeconds(order.completedAt || order.updatedAt);
    const prices = bySecond.get(time) || [];
    prices.push(paidPerToken(order));
    bySecond.set(time, prices);
  }
  const points = [...bySecond]
    .sort((a, b) => a[0] - b[0])
    .map(([time, prices]) => ({ time, value: prices.reduce((a, b) => a + b, 0) / prices.length }));
  market.snipeFills.setData(points);
  chartCounts().set("snipeFills", fills.length);
  if (points.length && launchedOnly(market.pair)) market.chart.timeScale().fitContent();
}

// --- start ----------------------------------------------------------------------------------

// `#key=...` (the link `oee up` prints): store it like the key input does, and take it out of
// the address bar so it is not bookmarked or shared. A fragment never reaches the server.
function keyFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const key = fragment.get("key");
  if (!key) return;
  localStorage.setItem("oee.apiKey", key.trim());
  fragment.delete("key");
  const rest = fragment.toString();
  history.replaceState(null, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
}

async function needsKey() {
  try {
    const response = await fetch("/health");
    const body = await response.json();
    return body.auth !== "disabled";
  } catch {
    return false; // unknown: try, and let the API say
  }
}

function showSignIn(show, reason = "") {
  $("#signin").hidden = !show;
  $("#signin-reason").textContent = reason;
  const badge = $("#feed-state");
  if (show) {
    badge.dataset.state = "signin";
    badge.textContent = "needs an API key";
  }
}

// Connect and load everything once there is a key (or none is needed).
function go() {
  if (state.authRequired && !apiKey()) {
    showSignIn(true);
    return;
  }
  showSignIn(false);
  if (state.started) {
    // A new key: the sockets reconnect with it, the lists reload.
    if (state.socket) {
      state.socket.close(); // its close handler reconnects and reloads
    } else {
      connectFeed(); // none yet, or the last one was refused
      loadOrders().catch(showError);
    }
    selectPair(market.pair);
    loadMarkets().catch(chartError);
    loadLaunches().catch(chartError);
    return;
  }
  state.started = true;
  connectFeed();
  loadOrders().catch(showError);
  loadMarkets().catch(chartError);
  loadLaunches().catch(chartError);
  selectPair(market.pair);
  setInterval(() => {
    loadMarkets().catch(chartError);
    loadConditional().catch(chartError);
    loadFills(market.generation).catch(chartError); // the engine's fills land a few slots late
  }, 5000);
  setInterval(() => {
    if (market.candles) loadCandles(market.generation).catch(chartError);
    loadLaunches().catch(chartError);
  }, 2000);
}

async function start() {
  keyFromFragment();
  const key = $("#api-key");
  key.value = localStorage.getItem("oee.apiKey") || "";
  key.addEventListener("change", () => {
    localStorage.setItem("oee.apiKey", apiKey());
    go();
  });
  $("#order-form").addEventListener("submit", submitOrder);
  $("#more").addEventListener("click", () => loadOrders(state.nextCursor).catch(showError));
  $("#chart-interval").addEventListener("change", (event) => {
    market.interval = event.target.value;
    selectPair(market.pair);
  });
  setInterval(renderFigures, 1000);
  state.authRequired = await needsKey();
  go();
}

document.addEventListener("DOMContentLoaded", start);
