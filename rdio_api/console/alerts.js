// Alerts: the configured rules (targets redacted by the server) and the recent deliveries, each
// with every attempt, linked to its call. ?rule=NAME shows one rule's deliveries, ?call_id=ID one
// call's (where the feed's alert mark leads). The list is read
// again every few seconds while the page is open: deliveries are retried in the background.

import { api, query } from "./api.js";
import { clear, h, talkgroupName, when } from "./dom.js";
import { labelCells } from "./format.js";

const REFRESH_MS = 5000;

function conditions(rule) {
  const parts = [];
  if (rule.words.length) parts.push(`words: ${rule.words.join(", ")}`);
  if (rule.phrases.length) parts.push(`phrases: ${rule.phrases.map((p) => `“${p}”`).join(", ")}`);
  if (rule.patterns.length) parts.push(`patterns: ${rule.patterns.map((p) => `/${p}/`).join(", ")}`);
  if (rule.systems.length) parts.push(`systems: ${rule.systems.join(", ")}`);
  if (rule.talkgroups.length) parts.push(`talkgroups: ${rule.talkgroups.join(", ")}`);
  if (rule.units.length) parts.push(`units: ${rule.units.join(", ")}`);
  if (rule.tones.length) parts.push(`tones: ${rule.tones.join(", ")}`);
  return parts.length ? parts.join(" · ") : "every call";
}

function rulesTable(rules, selected) {
  if (!rules.length) {
    return h("p.note", {}, "No rules: add them under alerts.rules in config.yaml (see config.example.yaml).");
  }
  return h(
    "div.table-wrap",
    {},
    labelCells(h(
      "table.alert-rules",
      {},
      h("thead", {}, h("tr", {}, ["rule", "fires at", "when", "cooldown", "actions"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        rules.map((rule) =>
          h(
            "tr",
            { dataset: { rule: rule.name, enabled: String(rule.enabled) } },
            h(
              "td",
              {},
              h("a", { href: `/alerts${query({ rule: rule.name })}`, "data-link": "", "aria-current": rule.name === selected ? "true" : null }, rule.name),
              rule.enabled ? null : h("span.none", {}, " (disabled)"),
            ),
            h("td", {}, rule.stage),
            h("td", {}, conditions(rule)),
            h("td.num", {}, rule.cooldown_seconds ? `${rule.cooldown_seconds} s` : "—"),
            h(
              "td",
              {},
              rule.actions.map((a) => h("div.target", {}, `${a.kind}: ${a.target}`)),
            ),
          ),
        ),
      ),
    )),
  );
}

function attemptLine(attempt, n) {
  const what = attempt.ok
    ? `ok${attempt.status_code ? ` (${attempt.status_code})` : ""}`
    : attempt.error || (attempt.status_code ? `HTTP ${attempt.status_code}` : "failed");
  return h(
    "li",
    { dataset: { ok: String(attempt.ok) } },
    h("time", { datetime: attempt.at, title: attempt.at }, when(attempt.at)),
    ` · attempt ${n + 1}: ${what} · ${Math.round(attempt.duration_ms)} ms`,
  );
}

function deliveryRows(d) {
  const label = talkgroupName(d);
  return [
    h(
      "tr",
      { dataset: { delivery: d.id, status: d.status } },
      h("td", {}, h("time", { datetime: d.created_at, title: d.created_at }, when(d.created_at))),
      h("td", {}, d.rule),
      h("td", {}, h("a", { href: `/calls/${d.call_id}`, "data-link": "" }, `${label} · call ${d.call_id}`)),
      h("td", {}, d.matched_text || ""),
      h("td", {}, `${d.action_kind}: ${d.target}`),
      h("td", { class: `delivery-status ${d.status}` }, d.status, d.next_attempt_at ? ` (retry ${when(d.next_attempt_at)})` : ""),
    ),
    h(
      "tr.attempts",
      { dataset: { attemptsOf: d.id } },
      h(
        "td",
        { colSpan: 6 },
        d.attempt_log.length ? h("ol.attempts", {}, d.attempt_log.map(attemptLine)) : h("span.none", {}, "not attempted yet"),
        d.status === "failed" && d.error ? h("p.error", {}, d.error) : null,
      ),
    ),
  ];
}

function deliveriesTable(deliveries) {
  if (!deliveries.length) return h("p.note", {}, "No deliveries yet.");
  return h(
    "div.table-wrap",
    {},
    labelCells(
      h(
        "table.alert-deliveries",
        {},
        h("thead", {}, h("tr", {}, ["fired", "rule", "call", "matched", "action", "status"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, deliveries.map(deliveryRows)),
      ),
    ),
  );
}

export function alertsView(root, params) {
  const rule = params.get("rule") || "";
  const callId = /^\d+$/.test(params.get("call_id") || "") ? params.get("call_id") : "";
  let alive = true;
  let timer = null;
  let rules = null;
  let pages = [];
  let nextCursor = null;
  const rulesBox = h("div", {}, h("p.note", {}, "Loading…"));
  const deliveriesBox = h("div", {}, h("p.note", {}, "Loading…"));
  const more = h("button", { type: "button", onclick: () => load(nextCursor) }, "Older deliveries");
  clear(
    root,
    h("h1", {}, "Alerts"),
    h("section.panel", {}, h("h2", {}, "Rules"), rulesBox),
    h(
      "section.panel",
      {},
      h(
        "h2",
        {},
        [rule ? `Deliveries of “${rule}”` : callId ? "Deliveries" : "Recent deliveries", callId ? ` for call ${callId}` : ""].join(""),
      ),
      rule || callId ? h("p", {}, h("a", { href: "/alerts", "data-link": "" }, "All deliveries")) : null,
      deliveriesBox,
      more,
    ),
  );

  function show() {
    if (!alive) return;
    if (rules) clear(rulesBox, rulesTable(rules, rule));
    clear(deliveriesBox, deliveriesTable(pages.flat()));
    more.hidden = !nextCursor;
  }

  async function load(cursor) {
    try {
      const page = await api(`/api/alerts/deliveries${query({ rule, call_id: callId, cursor })}`);
      if (!alive) return;
      if (cursor) pages.push(page.deliveries);
      else pages = [page.deliveries];
      nextCursor = page.next_cursor;
      show();
    } catch (error) {
      if (alive) clear(deliveriesBox, h("p.error", {}, error.message));
    }
  }

  api("/api/alerts/rules")
    .then((body) => {
      rules = body.rules;
      show();
    })
    .catch((error) => alive && clear(rulesBox, h("p.error", {}, error.message)));
  load(null);
  const tick = () => {
    // Only the newest page is read again, and only while no older page is open (no jumping rows).
    if (alive && pages.length <= 1) load(null);
    timer = setTimeout(tick, REFRESH_MS);
  };
  timer = setTimeout(tick, REFRESH_MS);
  return () => {
    alive = false;
    clearTimeout(timer);
  };
}
