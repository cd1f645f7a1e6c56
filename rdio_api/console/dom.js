// Small DOM and formatting helpers. Text always goes in as text nodes (never innerHTML), except
// search snippets, which pass `snippetNode`'s check first.

/** h("div.card", {title: "x", onclick: f}, child, "text", ...) -> HTMLElement */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// The server escapes the transcript and wraps hits in <mark>…</mark>. Anything else that looks
// like a tag means the snippet is not what we expect: show it as plain text instead.
const SNIPPET = /^(?:[^<>]|<mark>|<\/mark>)*$/;

/** A search snippet as DOM: HTML only when it holds nothing but text and <mark>/</mark>. */
export function snippetNode(snippet) {
  const el = h("p.snippet");
  if (typeof snippet !== "string") return el;
  if (SNIPPET.test(snippet)) el.innerHTML = snippet;
  else el.textContent = snippet;
  return el;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** Local time of an ISO timestamp; with the date when it is not today. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toDateString() === new Date().toDateString() ? timeFormat.format(date) : dateTimeFormat.format(date);
}

export function seconds(value, digits = 1) {
  return typeof value === "number" ? `${value.toFixed(digits)} s` : "";
}

export function systemName(call, labels) {
  return call.system_label || labels?.get(call.system) || `System ${call.system}`;
}

/** Label, else name, else "TG n": the rule of rdio_core.calls (CallSummary.talkgroup_title). */
export function talkgroupName(call) {
  return call.talkgroup_label || call.talkgroup_name || `TG ${call.talkgroup}`;
}

/** The unit that keyed up: its alias and radio id when both are known. */
export function unitName(call) {
  if (call.talker_alias && call.source) return `${call.talker_alias} (${call.source})`;
  if (call.talker_alias) return call.talker_alias;
  return call.source ? `unit ${call.source}` : "";
}

/** ISO (UTC) -> the value of an <input type="datetime-local"> (local time), and back. */
export function isoToLocalInput(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

export function localInputToIso(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}
