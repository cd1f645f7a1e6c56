// A call as a card (search results, and the feed when cards are chosen) or as one line (the feed's
// default, like a scanner's call list), and a transcript as clickable segments. Cards and lines are
// re-rendered in place when the store says a call's transcript changed; the segment being spoken is
// highlighted from the player's "time" events, wherever the call is shown. Radios (units) are links
// to a `unit:ID` search; dispatch tones show their name or frequencies. Every call's menu copies its
// link, downloads its audio, and holds or mutes its talkgroup, system, tag or group.

import { player } from "./player.js";
import {
  isAvoided,
  prefs,
  sameHold,
  tagKey,
  tgKey,
  toggleAvoidSystem,
  toggleAvoidTag,
  toggleAvoidTalkgroup,
  toggleHold,
} from "./prefs.js";
import { paintTalkgroup, shortDateTime } from "./format.js";
import { copyLink, downloadAudio } from "./share.js";
import { alertsOf, calls, loadSegments, segmentsOf } from "./store.js";
import { clear, h, seconds, snippetNode, systemName, talkgroupName, unitName, when } from "./dom.js";

const STATUS_TEXT = {
  pending: "waiting for a worker",
  deferred: "transcription deferred (backlog): runs when the queue drains",
  queued: "transcription queued",
  running: "transcribing…",
  processing: "transcribing…",
  completed: "transcribed",
  skipped: "skipped",
  failed: "transcription failed",
};

/** Why a call has no transcript (yet): its place in the queue, or the skipped/failed job's reason
 * (list items carry transcription_note; the event stream's transcript.updated carries it as
 * transcription_error), e.g. "queued behind 3 calls", "skipped: only dispatch tones, no speech: …". */
export function whyNoTranscript(call) {
  const status = call.transcription_status;
  const ahead = call.queue_ahead;
  if ((status === "pending" || status === "queued") && typeof ahead === "number") {
    return ahead ? `queued behind ${ahead} call${ahead === 1 ? "" : "s"}` : "next in the transcription queue";
  }
  const reason = call.transcription_note || call.transcription_error;
  const base = STATUS_TEXT[status] || "no transcript";
  return reason ? `${base}: ${reason}` : base;
}

/** The alert rules this call fired, as a link to their deliveries for this call. */
export function alertMark(call) {
  const rules = alertsOf.get(call.id);
  if (!rules?.length) return null;
  return h(
    "a.alerted",
    { href: `/alerts?call_id=${call.id}`, "data-link": "", title: `Fired alert ${rules.join(", ")}` },
    rules.join(", "),
  );
}

/** A radio as a link to the calls it transmitted on; `unit` is {unit, alias, emergency}. */
export function unitLink(unit) {
  const label = unit.alias ? `${unit.alias} (${unit.unit})` : `unit ${unit.unit}`;
  return h(
    unit.emergency ? "a.unit.emergency" : "a.unit",
    {
      href: `/search?q=${encodeURIComponent(`unit:${unit.unit}`)}`,
      "data-link": "",
      title: `Calls radio ${unit.unit} transmitted on${unit.emergency ? " (emergency on this call)" : ""}`,
    },
    unit.emergency ? `⚠ ${label}` : label,
  );
}

/** The radios of a call (list items carry `units`); the uploader's source alone for older servers. */
export function unitsNode(call) {
  if (Array.isArray(call.units) && call.units.length) {
    return h("span.units", {}, call.units.map((u) => unitLink(u)));
  }
  return unitName(call) ? h("span.unit", {}, unitName(call)) : null;
}

const TONE_KIND = { two_tone: "two-tone", long: "long tone", hi_low: "hi-low", dtmf: "DTMF" };

/** "Station 7 (1002.3 / 1270.7 Hz)", "DTMF 911#", "long tone 1500.0 Hz". */
export function toneText(tone) {
  const hz = (tone.frequencies || []).map((f) => Number(f).toFixed(1)).join(" / ");
  const detail =
    tone.kind === "dtmf" ? `DTMF ${tone.digits ?? ""}`.trim() : `${TONE_KIND[tone.kind] || tone.kind} ${hz} Hz`;
  return tone.name ? `${tone.name} (${detail})` : detail;
}

/** A call's dispatch tones as chips; nothing before analysis or when there were none. */
export function tonesNode(call) {
  if (!Array.isArray(call.tones) || !call.tones.length) return null;
  return h(
    "span.tones",
    {},
    call.tones.map((t) =>
      h(
        "span.tone",
        { title: `${TONE_KIND[t.kind] || t.kind} at ${seconds(t.start)}–${seconds(t.end)}` },
        toneText(t),
      ),
    ),
  );
}

/** The transcript of a call: segments (clickable, highlightable) when known, else the text. A
 * segment attributed to a radio (the call page's segments carry `unit`) is preceded by that radio
 * whenever it changes. */
export function transcriptNode(call, segments = segmentsOf.get(call.id)) {
  const box = h("div.transcript", { dataset: { callId: call.id } });
  if (call.transcription_status !== "completed") {
    box.append(h("p.status", {}, whyNoTranscript(call)));
    return box;
  }
  if (segments?.length) {
    const byUnit = new Map((call.units || []).map((u) => [u.unit, u]));
    box.append(
      h(
        "p.segments",
        {},
        segments.map((seg, i) => [
          seg.unit != null && seg.unit !== segments[i - 1]?.unit
            ? h("span.speaker", {}, unitLink({ ...byUnit.get(seg.unit), unit: seg.unit, alias: seg.alias }), ": ")
            : null,
          h(
            "span.seg",
            {
              role: "button",
              tabindex: "0",
              title: `${seg.start.toFixed(1)}–${seg.end.toFixed(1)} s: play from here`,
              dataset: { start: seg.start, end: seg.end },
            },
            seg.text,
            " ",
          ),
        ]),
      ),
    );
  } else {
    box.append(h("p.text", {}, call.transcript || "(no speech)"));
  }
  return box;
}

/** Holding the call's talkgroup, labelled by name and number ("FD Dispatch (TG 301)"). */
export function talkgroupHold(call) {
  const label = `${talkgroupName(call)} (TG ${call.talkgroup})`;
  return { kind: "talkgroup", system: call.system, talkgroup: call.talkgroup, label };
}

/** The hold a call offers of each kind, labelled as the scanner bar shows it. */
function holdsOf(call) {
  return [
    ["talkgroup", talkgroupHold(call)],
    ["system", { kind: "system", system: call.system, label: systemName(call) }],
    call.talkgroup_tag ? [`tag “${call.talkgroup_tag}”`, { kind: "tag", value: call.talkgroup_tag, label: `tag ${call.talkgroup_tag}` }] : null,
    call.talkgroup_group
      ? [`group “${call.talkgroup_group}”`, { kind: "group", value: call.talkgroup_group, label: `group ${call.talkgroup_group}` }]
      : null,
  ].filter(Boolean);
}

/** Share, hold and mute choices for the call; their state is read when the menu opens. */
function menu(call) {
  const items = h("div.menu-items");
  const fill = () => {
    const item = (label, action) => {
      const close = (e) => e.target.closest("details").removeAttribute("open");
      return h("button", { type: "button", onclick: (e) => (action(), close(e)) }, label);
    };
    const muted = (key, list) => list.includes(key);
    clear(
      items,
      item("Copy link", () => copyLink(call)),
      item("Download audio", () => downloadAudio(call)),
      holdsOf(call).map(([what, hold]) =>
        item(sameHold(prefs.hold, hold) ? `Release ${what.split(" ")[0]} hold` : `Hold ${what}`, () => toggleHold(hold)),
      ),
      item(muted(tgKey(call.system, call.talkgroup), prefs.avoidTalkgroups) ? "Unmute talkgroup" : "Mute talkgroup", () =>
        toggleAvoidTalkgroup(call.system, call.talkgroup),
      ),
      item(prefs.avoidSystems.includes(call.system) ? "Unmute system" : "Mute system", () => toggleAvoidSystem(call.system)),
      [
        ["tag", call.talkgroup_tag],
        ["group", call.talkgroup_group],
      ]
        .filter(([, value]) => value)
        .map(([kind, value]) =>
          item(`${muted(tagKey(kind, value), prefs.avoidTags) ? "Unmute" : "Mute"} ${kind} “${value}”`, () =>
            toggleAvoidTag(kind, value),
          ),
        ),
    );
  };
  return h(
    "details.menu",
    { ontoggle: (e) => e.target.open && fill() },
    h("summary", { title: "Copy link, download, hold or mute", "aria-label": "Call choices" }, "⋯"),
    items,
  );
}

function playButton(call) {
  return h("button.play", {
    type: "button",
    onclick: () => (player.current?.id === call.id && player.playing ? player.audio.pause() : player.play(call)),
  });
}

/** One line per call, as a scanner lists them: talkgroup colour, date and time, talkgroup, radio,
 * length, transcript (or why there is none), alert, link, menu. */
export function callRow(call) {
  const text =
    call.transcription_status === "completed"
      ? h("span.line-text", { title: call.transcript || "" }, call.transcript || "(no speech)")
      : h("span.line-text.status", {}, whyNoTranscript(call));
  const unit = call.talker_alias || (call.source ? String(call.source) : "");
  // Two groups: one grid line on a desktop (display: contents), two lines on a phone.
  const row = h(
    "article.row",
    { dataset: { callId: call.id } },
    playButton(call),
    h(
      "span.l1",
      {},
      h("span.tg", { title: `${systemName(call)} · TG ${call.talkgroup}` }, talkgroupName(call)),
      h("span.unit", { title: unitName(call) }, unit),
      h("time", { datetime: call.date_time, title: call.date_time }, shortDateTime(call.date_time)),
      menu(call),
    ),
    h(
      "span.l2",
      {},
      text,
      alertMark(call),
      h("span.dur", {}, call.duration_seconds != null ? seconds(call.duration_seconds) : ""),
      h("a.open", { href: `/calls/${call.id}`, "data-link": "", title: "Open the call page" }, `#${call.id}`),
    ),
  );
  paintTalkgroup(row, call);
  syncCard(row);
  return row;
}

/** A card for `call`; `snippet` (search) replaces the transcript text with highlighted hits. */
export function callCard(call, { labels, snippet } = {}) {
  // A search hit shows its snippet; the full transcript (segments to follow and click) once it plays.
  const card = h(
    snippet === undefined ? "article.card" : "article.card.has-snippet",
    { dataset: { callId: call.id } },
    h(
      "header",
      {},
      playButton(call),
      h(
        "div.who",
        {},
        h("span.tg", {}, talkgroupName(call)),
        h("span.sys", {}, `${systemName(call, labels)} · TG ${call.talkgroup}`),
        call.talkgroup_tag ? h("span.tag", {}, call.talkgroup_tag) : null,
      ),
      menu(call),
    ),
    h(
      "p.meta",
      {},
      h("time", { datetime: call.date_time, title: call.date_time }, when(call.date_time)),
      unitsNode(call),
      call.duration_seconds != null ? h("span.dur", {}, seconds(call.duration_seconds)) : null,
      alertMark(call),
      h("a.open", { href: `/calls/${call.id}`, "data-link": "" }, `#${call.id}`),
    ),
    tonesNode(call),
    snippet !== undefined ? snippetNode(snippet) : null,
    transcriptNode(call),
  );
  paintTalkgroup(card, call);
  syncCard(card);
  return card;
}

/** Show on a card whether its call is the one playing (button face, "now" outline, muted look). */
function syncCard(card) {
  const id = Number(card.dataset.callId);
  const call = calls.get(id);
  const playing = player.current?.id === id && player.playing;
  card.classList.toggle("now", player.current?.id === id);
  if (call) card.classList.toggle("avoided", isAvoided(call));
  const button = card.querySelector("button.play");
  button.textContent = playing ? "❚❚" : "▶";
  button.title = playing ? "Pause" : "Play this call";
  button.setAttribute("aria-label", button.title);
}

export function syncCards() {
  for (const card of document.querySelectorAll("article.card[data-call-id], article.row[data-call-id]")) {
    syncCard(card);
  }
}

/** Highlight the segment under `time` in every transcript of `callId` on the page. */
function highlight(callId, time) {
  for (const seg of document.querySelectorAll(".seg.speaking")) {
    if (Number(seg.closest(".transcript").dataset.callId) !== callId) seg.classList.remove("speaking");
  }
  for (const seg of document.querySelectorAll(`.transcript[data-call-id="${callId}"] .seg`)) {
    seg.classList.toggle("speaking", time >= Number(seg.dataset.start) && time < Number(seg.dataset.end));
  }
}

/** Wire the page-wide handlers once: segment clicks seek, player time highlights. */
export function installCardHandlers(root) {
  player.addEventListener("time", (e) => highlight(e.detail.callId, e.detail.time));
  const seekFrom = (target) => {
    const seg = target.closest(".seg");
    const box = target.closest(".transcript[data-call-id]");
    if (!seg || !box) return false;
    const call = calls.get(Number(box.dataset.callId));
    if (call) player.seek(call, Number(seg.dataset.start));
    return true;
  };
  root.addEventListener("click", (e) => seekFrom(e.target));
  root.addEventListener("keydown", (e) => {
    if ((e.key === "Enter" || e.key === " ") && seekFrom(e.target)) e.preventDefault();
  });
  // A call's segments are fetched when it starts playing, so the highlight has something to follow.
  player.addEventListener("state", () => {
    syncCards();
    const call = player.current;
    if (call && call.transcription_status === "completed" && !segmentsOf.has(call.id)) {
      loadSegments(call.id)
        .then(() => refreshTranscripts(call.id))
        .catch(() => {});
    }
  });
}

/** Re-render every transcript box of `callId` (after its transcript or segments changed). */
export function refreshTranscripts(callId) {
  const call = calls.get(callId);
  if (!call) return;
  for (const box of document.querySelectorAll(`.transcript[data-call-id="${callId}"]`)) {
    box.replaceWith(transcriptNode(call));
  }
  for (const row of document.querySelectorAll(`article.row[data-call-id="${callId}"]`)) swap(row, callRow(call));
}

/** Put `fresh` in the place of `old` (the same call drawn again), keeping its menu open if it was:
 * a call redrawn while the listener picks from its menu must not close the menu under the finger. */
export function swap(old, fresh) {
  const wasOpen = old.querySelector("details.menu[open]");
  old.replaceWith(fresh);
  if (wasOpen) fresh.querySelector("details.menu")?.setAttribute("open", "");
  return fresh;
}

/** Redraw the alert marks of these calls wherever they are shown. */
export function refreshAlerts(callIds) {
  for (const callId of callIds) {
    const call = calls.get(callId);
    if (!call) continue;
    for (const row of document.querySelectorAll(`article.row[data-call-id="${callId}"]`)) swap(row, callRow(call));
    for (const meta of document.querySelectorAll(`article.card[data-call-id="${callId}"] p.meta`)) {
      meta.querySelector("a.alerted")?.remove();
      meta.querySelector("a.open").before(alertMark(call) || "");
    }
  }
}
