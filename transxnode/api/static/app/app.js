"use strict";
// The owner's app: plain DOM, no build step.  The node answers integers (micro-units, Wh); people read
// tokens and kWh, formatted as consensus/rules/units.py does.  Signing requests carry the session's CSRF
// token in a header; the session token itself is an HttpOnly cookie this script never sees.

const state = {session: null, csrf: null, address: null, pending: null, timer: null};
const $ = (sel) => document.querySelector(sel);

function decimal(value, scale, places, minDecimals) {
  const v = BigInt(Math.round(Number(value)));
  const neg = v < 0n, a = neg ? -v : v, s = BigInt(scale);
  let digits = (a % s).toString().padStart(places, "0").replace(/0+$/, "");
  digits = digits.padEnd(minDecimals, "0");
  return (neg ? "-" : "") + (a / s).toLocaleString("en-US") + (digits ? "." + digits : "");
}
const tokens = (micro) => decimal(micro, 1000000, 6, 2);
const kwh = (wh) => decimal(wh, 1000, 3, 3);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
const when = (ms) => new Date(ms).toLocaleString([], {weekday: "short", hour: "2-digit", minute: "2-digit", second: "2-digit"});

function say(text, ok = false) {
  const m = $("#message");
  m.className = ok ? "ok" : "";
  m.textContent = text || "";
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json", ...(state.csrf ? {"X-CSRF-Token": state.csrf} : {})},
  };
  const r = await fetch("/app/api/" + path, {credentials: "same-origin", ...init});
  const doc = await r.json().catch(() => ({error: `the node answered ${r.status}`, reason: "error"}));
  if (!r.ok) {
    if (r.status === 403 && (doc.reason === "locked" || doc.reason === "csrf")) await refreshSession();
    const e = new Error(doc.error || `the node answered ${r.status}`);
    e.reason = doc.reason;
    throw e;
  }
  return doc;
}

async function refreshSession() {
  const s = await api("session");
  state.session = s;
  state.csrf = s.unlocked ? s.csrf : null;
  const asked = new URLSearchParams(location.search).get("account");  // a link may name the account: ?account=trx1...
  state.address = s.unlocked ? s.address : ($("#unlock-address").value || (s.keys.includes(asked) ? asked : s.node_key));
  const sel = $("#unlock-address");
  if (sel.options.length !== s.keys.length) {
    sel.innerHTML = s.keys.map((k) => `<option value="${esc(k)}"${k === state.address ? " selected" : ""}>${esc(k)}${k === s.node_key ? " (node key)" : ""}</option>`).join("");
  }
  $("#unlock-form").hidden = s.unlocked || !s.signing;
  $("#unlocked").hidden = !s.unlocked;
  $("#unlocked-text").textContent = s.unlocked ? `Unlocked: ${s.address} (locks after ${Math.round(s.idle_seconds / 60) || 1} min idle)` : "";
  if (!s.signing) say(s.refusal);
}

// ---------------------------------------------------------------- home
function dayChart(slots) {
  // Sold energy up, bought energy down, per slot; the clearing price as dots (right-hand scale).
  const w = 640, h = 160, mid = h / 2, n = Math.max(slots.length, 1), bw = Math.max(2, Math.min(24, (w - 40) / n - 2));
  const maxWh = Math.max(1, ...slots.map((s) => Math.max(s.sold_wh, s.bought_wh, ...s.bids.map((b) => b.wh))));
  const maxP = Math.max(1, ...slots.map((s) => s.clearing_price || 0));
  const bars = slots.map((s, i) => {
    const x = 20 + i * (w - 40) / n, up = (s.sold_wh / maxWh) * (mid - 10), down = (s.bought_wh / maxWh) * (mid - 10);
    const p = s.clearing_price == null ? "" : `<circle cx="${x + bw / 2}" cy="${h - 5 - (s.clearing_price / maxP) * (h - 10)}" r="3" fill="#c60"><title>slot ${s.slot}: ${tokens(s.clearing_price)} tokens/kWh</title></circle>`;
    return `<rect x="${x}" y="${mid - up}" width="${bw}" height="${up}" fill="#0b5"><title>slot ${s.slot}: sold ${kwh(s.sold_wh)} kWh</title></rect>` +
      `<rect x="${x}" y="${mid}" width="${bw}" height="${down}" fill="#36c"><title>slot ${s.slot}: bought ${kwh(s.bought_wh)} kWh</title></rect>` + p;
  }).join("");
  return `<svg class="chart" role="img" aria-label="Energy sold (green, up) and bought (blue, down) per slot, clearing price (orange dots)" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}">` +
    `<line x1="0" x2="${w}" y1="${mid}" y2="${mid}" stroke="#999"/>${bars}</svg>`;
}

function bidCell(b) {
  return `${b.side} ${kwh(b.wh)} kWh at ${tokens(b.price)}: ${esc(b.status)}${b.traded_wh ? ` (${kwh(b.traded_wh)} kWh traded)` : ""}`;
}

function daySection(title, slots) {
  const sum = (k) => slots.reduce((a, s) => a + s[k], 0);
  const rows = slots.map((s) => `<tr data-slot="${s.slot}"><td class="num">${s.slot}</td><td>${when(s.starts)}</td><td>${s.status}</td>` +
    `<td>${s.bids.map(bidCell).join("<br>") || "cancelled"}</td><td class="num">${s.clearing_price == null ? "-" : tokens(s.clearing_price)}</td>` +
    `<td class="num">${kwh(s.sold_wh)}</td><td class="num">${kwh(s.bought_wh)}</td><td class="num">${tokens(s.earned + s.saved)}</td></tr>`).join("");
  return `<section aria-label="${title}"><h3>${title}</h3>` +
    `<div class="totals"><div>Sold <b>${kwh(sum("sold_wh"))} kWh</b></div><div>Bought <b>${kwh(sum("bought_wh"))} kWh</b></div>` +
    `<div>Earned against feed-in <b>${tokens(sum("earned"))}</b> tokens</div><div>Saved against retail <b>${tokens(sum("saved"))}</b> tokens</div></div>` +
    (slots.length ? dayChart(slots) + `<table><caption>Your slots</caption><thead><tr><th class="num">Slot</th><th>Starts</th><th>Status</th><th>Your bids</th>` +
      `<th class="num">Clearing price (tokens/kWh)</th><th class="num">Sold kWh</th><th class="num">Bought kWh</th><th class="num">Gain vs grid (tokens)</th></tr></thead><tbody>${rows}</tbody></table>`
      : "<p>No bids for this day.</p>") + "</section>";
}

async function showHome() {
  const d = await api(`home?address=${encodeURIComponent(state.address)}&tz=${-new Date().getTimezoneOffset()}`);
  const tomorrow = d.today_starts + 86400000;
  $("#view").innerHTML = `<h2>Home</h2><p>Account ${esc(d.address)}: balance <b id="balance">${tokens(d.balance)}</b> tokens, ` +
    `${tokens(d.escrowed)} locked in bids. Grid: feed-in ${tokens(d.grid.feed_in)}, retail ${tokens(d.grid.retail)} tokens per kWh. Height ${d.height}.</p>` +
    daySection("Today", d.slots.filter((s) => s.starts < tomorrow)) + daySection("Tomorrow", d.slots.filter((s) => s.starts >= tomorrow)) +
    `<section aria-label="This month"><h3>This month</h3><div class="totals" id="month"><div>Sold <b>${kwh(d.month.sold_wh)} kWh</b></div>` +
    `<div>Bought <b>${kwh(d.month.bought_wh)} kWh</b></div><div>Earned against feed-in <b>${tokens(d.month.earned)}</b> tokens</div>` +
    `<div>Saved against retail <b>${tokens(d.month.saved)}</b> tokens</div></div>${d.month.complete ? "" : "<p>(the latest trades only: the month holds more)</p>"}</section>`;
}

// ---------------------------------------------------------------- bid
function bidForm() {
  const f = $("#bid-form");
  const slot = f.slot.value.trim();
  return {side: f.side.value, quantity: f.quantity.value.trim(), price: f.price.value.trim(),
          slot: slot === "" ? null : Number(slot), zone: Number(f.zone.value.trim() || "0")};
}

function quoteLines(req, q, slot) {
  const verb = req.side === "buy" ? "Buy" : "Sell";
  return [
    ["Bid", `${verb} ${kwh(q.wh)} kWh in slot ${slot} at ${req.side === "buy" ? "most" : "least"} ${tokens(q.limit)} tokens per kWh`],
    [`Grid ${req.side === "buy" ? "retail" : "feed-in"}`, `${tokens(q.grid_price)} tokens per kWh`],
    ["Expected price", `${tokens(q.expected_price)} tokens per kWh (${esc(q.basis)})`],
    ["Expected return against the grid", `${tokens(q.expected_return)} tokens`],
    ["At your limit", `${tokens(q.worst_return)} tokens`],
    ["Locked now", `${tokens(q.locked)} tokens ` + (req.side === "buy" ? "(escrow; what does not clear comes back when the slot clears)"
      : "(delivery collateral: what does not clear comes back when the slot clears, the rest once the meters settle it)")],
  ].map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
}

async function showBid() {
  $("#view").replaceChildren($("#bid-template").content.cloneNode(true));
  const s = state.session;
  $("#bid-slots").textContent = `Open slots: ${s.first_open_slot} to ${s.height + s.bid_horizon} (a slot lasts ${s.slot_seconds} s); zones 0 to ${s.zones - 1}.`;
  $("#bid-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const req = bidForm();
    try {
      const d = await api("quote", req);
      state.pending = {...req, slot: d.slot};
      $("#quote-lines").innerHTML = quoteLines(req, d.quote, d.slot);
      $("#quote").hidden = false;
      say("");
      $("#sign-button").focus();
    } catch (e) { $("#quote").hidden = true; say(e.message); }
  });
  $("#sign-button").addEventListener("click", async () => {
    try {
      const d = await api("bid", state.pending);
      say(`Bid ${d.bid} sent (pending; it clears in slot ${d.slot}).`, true);
      $("#quote").hidden = true;
      await listOpenBids();
    } catch (e) { say(e.message); }
  });
  await listOpenBids();
  await showAgentSwitch();
  await showPlanSection();
}

async function showAgentSwitch() {
  // The hands-free switch that `transx agent run` asks before each plan; changing it needs the session.
  const box = $("#agent-switch");
  const show = (d) => {
    box.checked = d.hands_free;
    $("#agent-state").textContent = d.hands_free ? "On: the agent bids." : "Off: the agent sends no new bids.";
  };
  // Disabled (in the page) until the saved state is shown: a click before it would flip a guess.
  try { show(await api(`agent?address=${encodeURIComponent(state.address)}`)); } catch (e) { say(e.message); return; }
  box.disabled = !state.csrf;
  box.addEventListener("change", async () => {
    try {
      show(await api("agent", {hands_free: box.checked}));
      say(box.checked ? "Hands-free on: saved." : "Hands-free off: saved.", true);
    } catch (e) { box.checked = !box.checked; say(e.message); }
  });
}

async function listOpenBids() {
  const d = await api(`home?address=${encodeURIComponent(state.address)}&tz=${-new Date().getTimezoneOffset()}`);
  const open = d.slots.flatMap((s) => s.bids.filter((b) => b.status === "open"));
  const el = $("#open-bids");
  if (!el) return;
  el.innerHTML = open.length ? `<table><thead><tr><th>Bid</th><th class="num">Slot</th><th>Side</th><th class="num">kWh</th><th class="num">Price</th><th>Cancel</th></tr></thead><tbody>` +
    open.map((b) => `<tr><td><code>${b.id.slice(0, 16)}</code></td><td class="num">${b.slot}</td><td>${b.side}</td><td class="num">${kwh(b.wh)}</td>` +
      `<td class="num">${tokens(b.price)}</td><td><button type="button" data-cancel="${b.id}" aria-label="Cancel the ${b.side} bid in slot ${b.slot}">Cancel</button></td></tr>`).join("") + "</tbody></table>"
    : "<p>No open bids.</p>";
  el.querySelectorAll("button[data-cancel]").forEach((btn) => btn.addEventListener("click", async () => {
    try {
      const r = await api("cancel", {bid: btn.dataset.cancel});
      say(`Cancel sent: transaction ${r.hash} (pending).`, true);
    } catch (e) { say(e.message); }
  }));
}

// ---------------------------------------------------------------- day plan (the home agent, a plugin)
const HOME_FIELDS = ["kwp", "daily_kwh", "battery_kwh", "battery_soc"];

function planChart(plan) {
  // Forecast PV (green) and load (blue) per slot, in Wh; the planned bids marked under their slot.
  const n = plan.pv_wh.length, w = 640, h = 140, bw = (w - 20) / n;
  const max = Math.max(1, ...plan.pv_wh, ...plan.load_wh);
  const bars = plan.pv_wh.map((pv, i) => {
    const x = 10 + i * bw, lp = (pv / max) * (h - 20), ll = (plan.load_wh[i] / max) * (h - 20);
    return `<rect x="${x}" y="${h - 10 - lp}" width="${bw / 2}" height="${lp}" fill="#0b5"><title>slot ${plan.first_slot + i}: PV ${kwh(pv)} kWh</title></rect>` +
      `<rect x="${x + bw / 2}" y="${h - 10 - ll}" width="${bw / 2}" height="${ll}" fill="#36c"><title>slot ${plan.first_slot + i}: load ${kwh(plan.load_wh[i])} kWh</title></rect>`;
  }).join("");
  const marks = plan.bids.map((b) => `<circle cx="${10 + (b.slot - plan.first_slot + 0.5) * bw}" cy="${h - 4}" r="3" fill="${b.side === "sell" ? "#0b5" : "#36c"}"><title>${b.side} ${kwh(b.wh)} kWh in slot ${b.slot}</title></circle>`).join("");
  return `<svg class="chart" role="img" aria-label="Forecast solar (green) and load (blue) per slot; dots: planned bids" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}">${bars}${marks}</svg>`;
}

async function showPlanSection() {
  const f = $("#home-form");
  let home;
  try { home = await api(`settings?address=${encodeURIComponent(state.address)}`); } catch (e) {
    $("#plan-section").innerHTML = `<h3>Day plan</h3><p>${esc(e.message)}</p>`;
    return;
  }
  HOME_FIELDS.forEach((k) => { f[k].value = home[k]; });
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      if (state.csrf) await api("settings", Object.fromEntries(HOME_FIELDS.map((k) => [k, Number(f[k].value)])));
      const plan = await api(`plan?address=${encodeURIComponent(state.address)}&slots=48`);
      state.plan = plan;
      const sold = plan.bids.filter((b) => b.side === "sell").reduce((a, b) => a + b.wh, 0);
      const bought = plan.bids.filter((b) => b.side === "buy").reduce((a, b) => a + b.wh, 0);
      $("#plan").innerHTML = planChart(plan) +
        `<p>${plan.bids.length} bids from slot ${plan.first_slot}: sell ${kwh(sold)} kWh, buy ${kwh(bought)} kWh; ` +
        `expected gain against net metering ${tokens(plan.expected_gain)} tokens${plan.cut_to_funds ? " (cut to what the balance can lock)" : ""}.</p>` +
        (plan.bids.length ? `<table><thead><tr><th class="num">Slot</th><th>Side</th><th class="num">kWh</th><th class="num">Price limit</th></tr></thead><tbody>` +
          plan.bids.map((b) => `<tr><td class="num">${b.slot}</td><td>${b.side}</td><td class="num">${kwh(b.wh)}</td><td class="num">${tokens(b.price)}</td></tr>`).join("") +
          `</tbody></table><button type="button" id="accept-plan">Accept the plan: sign ${plan.bids.length} bids</button>` : "");
      const btn = $("#accept-plan");
      if (btn) btn.addEventListener("click", async () => {
        try {
          const r = await api("plan/accept", {bids: state.plan.bids});
          const skipped = r.skipped_slots.length ? ` Slots ${r.skipped_slots.join(", ")} closed for bids while sending; not sent.` : "";
          say(`${r.sent.length} bids sent (pending)` + (r.sent.length ? `, slots ${r.sent[0].slot} to ${r.sent[r.sent.length - 1].slot}.` : ".") + skipped, true);
          await listOpenBids();
        } catch (e) { say(e.message); }
      });
    } catch (e) { say(e.message); }
  });
}

// ---------------------------------------------------------------- car and station
const sessionRow = (r, who) => `<tr><td><code>${r.session.slice(0, 16)}</code></td><td>${esc(who)}</td><td>${esc(r.ev_id)}</td><td>${r.status}</td>` +
  `<td class="num">${kwh(r.delivered_wh)}</td><td class="num">${tokens(r.price)}</td><td class="num">${tokens(r.amount)}</td>` +
  `<td class="num">${r.soc_start}%</td><td class="num">${r.soc_end == null ? "-" : r.soc_end + "%"}</td></tr>`;
const sessionTable = (rows, whoTitle, who) => rows.length ? `<table><thead><tr><th>Session</th><th>${whoTitle}</th><th>Car</th><th>State</th><th class="num">kWh</th>` +
  `<th class="num">Price/kWh</th><th class="num">Paid (tokens)</th><th class="num">Charge before</th><th class="num">after</th></tr></thead><tbody>` +
  rows.map((r) => sessionRow(r, who(r))).join("") + "</tbody></table>" : "<p>No sessions.</p>";

const older = (d, more) => more ? `<p>The newest ${d.shown} sessions; <code>transx ev sessions</code> and the explorer list older ones.</p>` : "";

async function showEv() {
  const d = await api(`ev?address=${encodeURIComponent(state.address)}&tz=${-new Date().getTimezoneOffset()}`);
  $("#view").innerHTML = `<h2>Car</h2><h3>Charging sessions</h3>${sessionTable(d.car, "Station", (r) => r.station)}${older(d, d.more_car)}` +
    `<h3>Authorisations issued here</h3>` + (d.authorisations.length ? `<table><thead><tr><th>Car</th><th class="num">Up to kWh</th><th class="num">Max price</th><th>Valid until</th><th>Used</th><th>File</th></tr></thead><tbody>` +
      d.authorisations.map((a) => `<tr><td>${esc(a.ev_id)}</td><td class="num">${kwh(a.max_wh)}</td><td class="num">${tokens(a.max_price)}</td><td>${new Date(a.expiry).toLocaleString()}</td>` +
        `<td>${a.used ? "yes" : "no"}</td><td><a download="authorisation-${esc(a.ev_id)}.bin" href="data:application/octet-stream;base64,${btoa(a.hex.match(/../g).map((h) => String.fromCharCode(parseInt(h, 16))).join(""))}">download</a></td></tr>`).join("") + "</tbody></table>"
      : "<p>None valid.</p>") +
    `<form id="auth-form"><fieldset><legend>Authorise a card</legend>` +
    `<label for="auth-ev">Car (plate or VIN)</label><input id="auth-ev" name="ev_id" required maxlength="32">` +
    `<label for="auth-energy">Up to (e.g. 60kWh)</label><input id="auth-energy" name="max_energy" value="60kWh">` +
    `<label for="auth-price">Highest price (tokens per kWh)</label><input id="auth-price" name="max_price" value="0.80">` +
    `<label for="auth-hours">Valid for (hours)</label><input id="auth-hours" name="valid_hours" value="720">` +
    `<button type="submit">Sign the authorisation</button></fieldset></form>`;
  $("#auth-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    try {
      const a = await api("authorise", {ev_id: f.ev_id.value, max_energy: f.max_energy.value, max_price: f.max_price.value, valid_hours: Number(f.valid_hours.value)});
      say(`Authorisation for ${a.ev_id} signed: session ${a.session}. Download it below for a station (transx station session open FILE) or a phone app.`, true);
      await showEv();
    } catch (e) { say(e.message); }
  });
}

async function showStation() {
  const d = await api(`ev?address=${encodeURIComponent(state.address)}&tz=${-new Date().getTimezoneOffset()}`);
  const t = d.station_today;
  $("#view").innerHTML = `<h2>Station</h2><div class="totals"><div>Sessions today <b>${t.sessions}</b> (${t.open} open)</div>` +
    `<div>Delivered today <b>${kwh(t.delivered_wh)} kWh</b></div><div>Revenue today <b>${tokens(t.revenue)}</b> tokens</div></div>` +
    `<p>Reader: the node does not know the reader's state (the station's NFC plugin reports it in its own log).</p>` +
    `<h3>Sessions</h3>${sessionTable(d.station, "Owner", (r) => r.owner)}${older(d, d.more_station)}`;
}

// ---------------------------------------------------------------- wiring
const PAGES = {home: showHome, bid: showBid, ev: showEv, station: showStation};

async function render() {
  const page = (location.hash || "#home").slice(1);
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.getAttribute("href") === "#" + page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  try { await (PAGES[page] || showHome)(); } catch (e) { say(e.message); }
}

async function refresh() {
  const page = (location.hash || "#home").slice(1);
  if (document.activeElement && document.activeElement.closest("form, #quote")) return; // never under the user's cursor
  try {
    await refreshSession();
    if (page === "home") await showHome();
    else if (page === "bid") await listOpenBids();
  } catch (e) { /* the next round tries again */ }
}

window.addEventListener("hashchange", () => { say(""); render(); });
window.addEventListener("DOMContentLoaded", async () => {
  $("#unlock-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    try {
      const s = await api("unlock", {address: f.address.value, password: f.password.value, idle_seconds: Number(f.idle.value)});
      f.password.value = "";
      state.csrf = s.csrf;
      say(`Unlocked ${s.address}.`, true);
      await refreshSession();
      await render();
    } catch (e) { f.password.value = ""; say(e.message); }
  });
  $("#unlock-address").addEventListener("change", () => { state.address = $("#unlock-address").value; render(); });
  $("#lock-button").addEventListener("click", async () => {
    try { await api("lock", {}); say("Locked.", true); } catch (e) { say(e.message); }
    await refreshSession();
  });
  try { await refreshSession(); } catch (e) { say(e.message); }
  await render();
  state.timer = setInterval(refresh, Math.max(2, state.session ? state.session.slot_seconds : 5) * 1000);
});
