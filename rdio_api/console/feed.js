// The live feed: the newest calls first, inserted as calls arrive on the event stream. One line per
// call by default (a scanner's call list: more calls on a screen), cards as an option the listener's
// prefs keep. The feed's calls live in this module, so leaving for the search page and coming back
// keeps them. A call arrives before its tones are analysed (at upload, on the alerts queue); when
// its transcript event comes (analysis runs first) the call is read once more for its tones. Calls
// that fired an alert rule are marked, linked to their deliveries.

import { ApiError, api, query } from "./api.js";
import { callCard, callRow, refreshAlerts, swap } from "./cards.js";
import { prefs, prefsChanged, savePrefs } from "./prefs.js";
import { bus, calls, dropCall, loadAlerts, putCall, systemLabels } from "./store.js";
import { clear, h } from "./dom.js";

const ALERTS_EVERY_MS = 30_000;
// A delivery is written by the alerts worker a moment after the call or transcript it fired on:
// read twice after an event, then the half-minute poll catches a slow one.
const ALERTS_AFTER_EVENT_MS = [1500, 6000];

const PAGE = 50;
const MAX_CARDS = 500; // a day-long open tab should not grow without bound

const feed = new Set(); // call ids shown in the feed
let nextCursor = null;
let status = "loading"; // "loading" | "ready" | error text
let mounted = null; // {list, more, note, labels} while the feed view is on screen

const newerFirst = (a, b) => (a.date_time === b.date_time ? b.id - a.id : a.date_time < b.date_time ? 1 : -1);

function ordered() {
  return [...feed].map((id) => calls.get(id)).sort(newerFirst);
}

/** Read (or re-read) the first page; merged with whatever the stream already delivered. */
export async function reloadFeed() {
  try {
    const body = await api(`/api/calls${query({ limit: PAGE })}`);
    for (const item of body.calls) feed.add(putCall(item).id);
    nextCursor = body.next_cursor;
    status = "ready";
  } catch (error) {
    status = error instanceof ApiError ? error.message : String(error);
  }
  if (mounted) renderAll();
}

async function loadOlder() {
  if (!nextCursor) return;
  mounted.more.disabled = true;
  try {
    const body = await api(`/api/calls${query({ limit: PAGE, cursor: nextCursor })}`);
    for (const item of body.calls) feed.add(putCall(item).id);
    nextCursor = body.next_cursor;
  } catch (error) {
    status = error.message;
  }
  if (mounted) renderAll();
}

/** A call from the event stream: into the feed, and onto the screen in its place by time. */
export function onLiveCall(call) {
  feed.add(call.id);
  if (mounted) {
    const card = shown(call, mounted.labels);
    card.classList.add("arrived");
    const after = [...mounted.list.children].find((el) => {
      const other = calls.get(Number(el.dataset.callId));
      return other && newerFirst(call, other) < 0;
    });
    mounted.list.insertBefore(card, after || null);
    mounted.note.textContent = "";
  }
  if (feed.size > MAX_CARDS) {
    for (const old of ordered().slice(MAX_CARDS)) {
      feed.delete(old.id);
      mounted?.list.querySelector(`article[data-call-id="${old.id}"]`)?.remove();
      dropCall(old.id);
    }
    nextCursor = null; // the dropped calls are still one search or reload away
  }
}

const toneChecked = new Set(); // calls read again for their tones (once each)

async function refreshTones(callId) {
  const call = calls.get(callId);
  if (!feed.has(callId) || !call || Array.isArray(call.tones) || toneChecked.has(callId)) return;
  toneChecked.add(callId);
  try {
    const full = await api(`/api/calls/${callId}`);
    Object.assign(call, { tones: full.tones, units: full.units });
  } catch {
    return; // the card keeps what it had; the call page reads everything anyway
  }
  if (!Array.isArray(call.tones) || !call.tones.length || !mounted) return;
  const old = mounted.list.querySelector(`article[data-call-id="${callId}"]`);
  if (old) swap(old, shown(call, mounted.labels));
}

bus.addEventListener("transcript", (e) => refreshTones(e.detail.callId));

/** A call as the feed shows it now: one line, or a card. */
function shown(call, labels) {
  return prefs.view === "cards" ? callCard(call, { labels }) : callRow(call);
}

let alertTimers = [];

/** Read the alert marks a moment after a call or transcript event (a burst of events, one read
 * at each delay after its last event). */
function alertsSoon() {
  if (!mounted) return;
  for (const timer of alertTimers) clearTimeout(timer);
  alertTimers = ALERTS_AFTER_EVENT_MS.map((ms) => setTimeout(loadAlerts, ms));
}

bus.addEventListener("alerts", (e) => refreshAlerts(e.detail.callIds));
bus.addEventListener("transcript", alertsSoon);
bus.addEventListener("call", (e) => e.detail.live && alertsSoon());

function renderAll() {
  const { list, more, note, labels } = mounted;
  const items = ordered();
  list.className = prefs.view === "cards" ? "cards" : "rows";
  const menuOf = list.querySelector("details.menu[open]")?.closest("article")?.dataset.callId;
  clear(list, items.map((call) => shown(call, labels)));
  if (menuOf) list.querySelector(`article[data-call-id="${menuOf}"] details.menu`)?.setAttribute("open", "");
  more.hidden = !nextCursor;
  more.disabled = false;
  if (status === "loading") note.textContent = "Loading…";
  else if (status !== "ready") note.textContent = `Cannot load calls: ${status}`;
  else note.textContent = items.length ? "" : "No calls yet. They appear here as they arrive.";
  note.classList.toggle("error", status !== "ready" && status !== "loading");
}

function viewSwitch() {
  const choice = (view, label) =>
    h(
      "button.toggle",
      {
        type: "button",
        "aria-pressed": String(prefs.view === view),
        dataset: { view },
        onclick: () => savePrefs({ view }),
      },
      label,
    );
  return h("div.view-switch", { role: "group", "aria-label": "Feed layout" }, choice("list", "List"), choice("cards", "Cards"));
}

export function feedView(root) {
  const list = h("div.rows", { id: "feed" });
  const more = h("button.more", { type: "button", onclick: loadOlder }, "Older calls");
  const note = h("p.note", { role: "status" });
  const toolbar = h("div.feed-tools", {}, viewSwitch());
  clear(root, h("h1.visually-hidden", {}, "Live feed"), toolbar, note, list, more);
  mounted = { list, more, note, labels: null };
  let view = prefs.view;
  const onPrefs = () => {
    if (!mounted || prefs.view === view) return;
    view = prefs.view;
    toolbar.replaceChildren(viewSwitch());
    renderAll();
  };
  prefsChanged.addEventListener("change", onPrefs);
  renderAll();
  systemLabels().then((labels) => {
    if (!mounted || mounted.list !== list) return;
    mounted.labels = labels;
    renderAll();
  });
  loadAlerts();
  const timer = setInterval(loadAlerts, ALERTS_EVERY_MS);
  return () => {
    mounted = null;
    clearInterval(timer);
    prefsChanged.removeEventListener("change", onPrefs);
  };
}
