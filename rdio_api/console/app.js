// The console's entry point: the router (History API, so /calls/7 and /search?q=… are real URLs
// that survive a reload), the scanner bar, and the one event stream that feeds every view.

import { alertsView } from "./alerts.js";
import { askForKey, forgetKey, storedKey } from "./api.js";
import { installCardHandlers, refreshTranscripts, syncCards, talkgroupHold } from "./cards.js";
import { feedView, onLiveCall, reloadFeed } from "./feed.js";
import { callView } from "./callpage.js";
import { navigate } from "./nav.js";
import { player } from "./player.js";
import { prefs, prefsChanged, toggleHold } from "./prefs.js";
import { searchView } from "./search.js";
import { bus, putAnalysis, putCall, putTranscript } from "./store.js";
import { LiveStream } from "./sse.js";
import { talkgroupsView } from "./talkgroups.js";
import { h, systemName, talkgroupName, unitName } from "./dom.js";

const view = document.getElementById("view");
let unmount = null;

function route() {
  const path = location.pathname;
  const call = /^\/calls\/(\d+)\/?$/.exec(path);
  if (call) return ["calls", () => callView(view, Number(call[1]))];
  if (path === "/search") return ["search", () => searchView(view, new URLSearchParams(location.search))];
  if (path === "/talkgroups") return ["talkgroups", () => talkgroupsView(view)];
  if (path === "/alerts") return ["alerts", () => alertsView(view, new URLSearchParams(location.search))];
  if (path === "/") return ["feed", () => feedView(view)];
  // The server answers an unknown path a browser asks for with this page (status 404).
  const missing = () =>
    view.replaceChildren(
      h(
        "section.not-found",
        {},
        h("h1", {}, "Page not found"),
        h("p", {}, "Nothing is at ", h("code", {}, path), "."),
        h(
          "p",
          {},
          h("a", { href: "/", "data-link": "" }, "Live feed"),
          " · ",
          h("a", { href: "/search", "data-link": "" }, "Search"),
          " · ",
          h("a", { href: "/talkgroups", "data-link": "" }, "Talkgroups"),
        ),
      ),
    );
  return ["", missing];
}

function render() {
  unmount?.();
  unmount = null;
  const [name, mount] = route();
  for (const link of document.querySelectorAll("nav a[data-nav]")) {
    link.toggleAttribute("aria-current", link.dataset.nav === name);
  }
  unmount = mount() || null;
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", render);

// --- scanner bar ----------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function syncBar() {
  const live = prefs.live;
  $("live-toggle").textContent = live ? "Live on" : "Live off";
  $("live-toggle").setAttribute("aria-pressed", String(live));
  $("play-pause").textContent = player.playing ? "Pause" : "Play";
  const hold = prefs.hold;
  $("hold").textContent = hold ? `Held: ${hold.label}` : "Hold";
  $("hold").title = hold ? "Release the hold" : "Hold the talkgroup now playing";
  $("hold").setAttribute("aria-pressed", String(Boolean(hold)));
  const call = player.current;
  $("now-playing").textContent = player.error
    ? `Cannot play ${player.error}`
    : call
      ? `${talkgroupName(call)} · ${systemName(call)}${unitName(call) ? ` · ${unitName(call)}` : ""}`
      : "idle";
  $("now-playing").classList.toggle("error", Boolean(player.error));
  $("queue-size").textContent = player.queue.length ? `${player.queue.length} queued` : "";
  if (Math.abs(Number($("volume").value) - prefs.volume) > 0.001) $("volume").value = String(prefs.volume);
}

player.attach($("audio"));
$("live-toggle").addEventListener("click", () => player.setLive(!prefs.live));
$("play-pause").addEventListener("click", () => player.toggle());
$("skip").addEventListener("click", () => player.skip());
$("replay").addEventListener("click", () => player.replay());
$("hold").addEventListener("click", () => {
  const call = player.current;
  toggleHold(prefs.hold || !call ? null : talkgroupHold(call));
});
$("volume").addEventListener("input", (e) => player.setVolume(Number(e.target.value)));
$("key-button").addEventListener("click", async () => {
  const had = storedKey();
  forgetKey();
  await askForKey(had ? "Enter a new key (the old one was forgotten)." : "");
  location.reload(); // a new key may see other systems: start over with its view
});
player.addEventListener("state", syncBar);
prefsChanged.addEventListener("change", () => {
  player.refilter();
  syncCards();
  syncBar();
});

// --- event stream ---------------------------------------------------------------------------------

const stateBadge = $("stream-state");
let firstOpen = true;
const stream = new LiveStream("/api/events", {
  onState(state, detail) {
    if (firstOpen && (state === "failed" || state === "reconnecting")) {
      firstOpen = false; // no stream yet: still show what the list route has
      reloadFeed();
    }
    stateBadge.dataset.state = state;
    stateBadge.textContent = state === "failed" ? "stream refused" : state;
    stateBadge.title = detail || "event stream";
  },
  onOpen() {
    // The feed's first page is read once the stream is open: a call created in between is then in
    // the page, on the stream, or both (merged by id), never in neither.
    if (firstOpen) reloadFeed();
    firstOpen = false;
  },
  onEvent(event) {
    if (event.type === "call.created" && event.data?.call) {
      const call = putCall(event.data.call, true);
      onLiveCall(call);
      player.arrived(call);
    } else if (event.type === "transcript.updated" && event.data?.call_id !== undefined) {
      putTranscript(event.data);
    } else if (event.type === "call.analyzed" && event.data?.call_id !== undefined) {
      putAnalysis(event.data);
    }
  },
});
bus.addEventListener("transcript", (e) => refreshTranscripts(e.detail.callId));

installCardHandlers(document.body);
syncBar();
render();
stream.start();
// For the browser tests and the curious: the stream and player, read-only in spirit.
window.rdioConsole = { stream, player };
