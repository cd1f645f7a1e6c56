// The live feed: the newest calls first, cards inserted as calls arrive on the event stream. The
// feed's calls live in this module, so leaving for the search page and coming back keeps them.
// A card arrives before its tones are analysed (at upload, on the alerts queue); when its
// transcript event comes (analysis runs first) the call is read once more for its tones.

import { ApiError, api, query } from "./api.js";
import { callCard } from "./cards.js";
import { bus, calls, dropCall, putCall, systemLabels } from "./store.js";
import { clear, h } from "./dom.js";

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
    const card = callCard(call, { labels: mounted.labels });
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
  mounted.list
    .querySelector(`article[data-call-id="${callId}"]`)
    ?.replaceWith(callCard(call, { labels: mounted.labels }));
}

bus.addEventListener("transcript", (e) => refreshTones(e.detail.callId));

function renderAll() {
  const { list, more, note, labels } = mounted;
  const items = ordered();
  clear(list, items.map((call) => callCard(call, { labels })));
  more.hidden = !nextCursor;
  more.disabled = false;
  if (status === "loading") note.textContent = "Loading…";
  else if (status !== "ready") note.textContent = `Cannot load calls: ${status}`;
  else note.textContent = items.length ? "" : "No calls yet. They appear here as they arrive.";
  note.classList.toggle("error", status !== "ready" && status !== "loading");
}

export function feedView(root) {
  const list = h("div.cards", { id: "feed" });
  const more = h("button.more", { type: "button", onclick: loadOlder }, "Older calls");
  const note = h("p.note", { role: "status" });
  clear(root, h("h1.visually-hidden", {}, "Live feed"), note, list, more);
  mounted = { list, more, note, labels: null };
  renderAll();
  systemLabels().then((labels) => {
    if (!mounted || mounted.list !== list) return;
    mounted.labels = labels;
    renderAll();
  });
  return () => {
    mounted = null;
  };
}
