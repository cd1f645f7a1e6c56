// What the page knows about calls, shared by every view: the feed, search results and the call
// page all read calls from here, so a transcript that arrives on the event stream updates each
// place the call is shown. Events on `bus`: "call" {call, live} and "transcript" {callId}.

import { api } from "./api.js";

export const calls = new Map(); // id -> call (the API's list item, updated in place)
export const segmentsOf = new Map(); // call id -> [{start, end, text}] once known
export const bus = new EventTarget();

const emit = (type, detail) => bus.dispatchEvent(new CustomEvent(type, { detail }));

/** Add or refresh a call; returns the stored object (one object per id). */
export function putCall(call, live = false) {
  const known = calls.get(call.id);
  if (known) {
    // A list page may be older than an event that already completed the transcript: keep it.
    const keepTranscript = known.transcription_status === "completed" && call.transcription_status !== "completed";
    const { transcription_status: status, transcript } = known;
    Object.assign(known, call);
    if (keepTranscript) Object.assign(known, { transcription_status: status, transcript });
    return known;
  }
  calls.set(call.id, call);
  emit("call", { call, live });
  return call;
}

/**
 * Apply a `transcript.updated` event. The call keeps its completed transcript when a later
 * re-transcription fails or is skipped, the same rule as the API's `transcription_status`.
 */
export function putTranscript({ call_id: callId, status, text, segments, error }) {
  const call = calls.get(callId);
  if (status === "completed") {
    if (Array.isArray(segments)) segmentsOf.set(callId, segments);
    else segmentsOf.delete(callId);
    if (call) Object.assign(call, { transcription_status: status, transcript: text ?? "", transcription_error: null });
  } else if (call && call.transcription_status !== "completed") {
    Object.assign(call, { transcription_status: status, transcription_error: error || null });
  }
  emit("transcript", { callId });
}

/** Apply a `call.analyzed` event: the call's dispatch tones; views showing it redraw it. */
export function putAnalysis({ call_id: callId, tones }) {
  const known = calls.get(callId);
  if (known) known.tones = tones;
  emit("transcript", { callId });
}

/** Forget a call no view shows any more (the feed keeps the newest few hundred). */
export function dropCall(callId) {
  if (document.querySelector(`[data-call-id="${callId}"]`)) return;
  calls.delete(callId);
  segmentsOf.delete(callId);
}

/** The segments of a call's completed transcript, fetched once when not already known. */
export async function loadSegments(callId) {
  if (segmentsOf.has(callId)) return segmentsOf.get(callId);
  const body = await api(`/api/calls/${callId}/transcription`);
  const segments = body.transcript?.segments || [];
  if (body.transcript) segmentsOf.set(callId, segments); // a pending call's segments come later
  return segments;
}

let systemsPromise = null;

/** id -> label of the systems this key may see (loaded once). */
export function systemLabels() {
  systemsPromise ??= api("/api/systems").then(
    (body) => new Map(body.systems.map((s) => [s.id, s.label])),
    () => {
      systemsPromise = null;
      return new Map();
    },
  );
  return systemsPromise;
}

// Calls that fired an alert rule: call id -> the rules' names, from the newest deliveries. The
// feed reads them when it opens, a moment after each call or transcript event (a rule fires at
// upload or once the transcript is stored) and every half minute (deliveries come from workers).
export const alertsOf = new Map();
const ALERT_PAGE = 200;
let alertsPending = null;

/** Read the newest deliveries; emits "alerts" {callIds} for the calls whose marks changed. */
export function loadAlerts() {
  alertsPending ??= api(`/api/alerts/deliveries?limit=${ALERT_PAGE}`)
    .then((body) => {
      const fresh = new Map();
      for (const d of body.deliveries) {
        const rules = fresh.get(d.call_id) || [];
        if (!rules.includes(d.rule)) rules.push(d.rule);
        fresh.set(d.call_id, rules);
      }
      const changed = [];
      for (const [callId, rules] of fresh) {
        if ((alertsOf.get(callId) || []).join("\n") !== rules.join("\n")) changed.push(callId);
        alertsOf.set(callId, rules);
      }
      if (changed.length) emit("alerts", { callIds: changed });
    })
    .catch(() => {}) // no alerts to mark is not worth an error on the feed
    .finally(() => {
      alertsPending = null;
    });
  return alertsPending;
}
