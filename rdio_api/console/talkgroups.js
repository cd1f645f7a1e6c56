// Systems and talkgroups this key may see, with call counts and last activity where the API gives
// them, and the scanner's hold/mute choices for each system, talkgroup, tag and group. A name links
// to a search on it. A talkgroup whose calls are stored but not transcribed says so.

import { api, query } from "./api.js";
import {
  prefs,
  prefsChanged,
  sameHold,
  tagKey,
  tgKey,
  toggleAvoidSystem,
  toggleAvoidTag,
  toggleAvoidTalkgroup,
  toggleHold,
} from "./prefs.js";
import { clear, h, when } from "./dom.js";

// Field names read from /api/systems and /api/talkgroups items, when the server sends them.
const COUNT = "call_count";
const LAST = "last_call_at";

function activity(item) {
  const count = item[COUNT];
  const last = item[LAST];
  return [
    h("td.num", {}, typeof count === "number" ? String(count) : "—"),
    h("td.last", {}, last ? h("time", { datetime: last, title: last }, when(last)) : "—"),
  ];
}

function toggle(label, on, action) {
  return h("button.toggle", { type: "button", "aria-pressed": String(on), onclick: action }, label);
}

/** Hold/mute for every tag and group the talkgroups carry (across systems, as scanners do). */
function tagsPanel(talkgroups) {
  const found = new Map();
  for (const t of talkgroups) {
    if (t.tag) found.set(tagKey("tag", t.tag), ["tag", t.tag]);
    if (t.group) found.set(tagKey("group", t.group), ["group", t.group]);
  }
  if (!found.size) return null;
  return h(
    "section.panel.tags",
    {},
    h("h2", {}, "Tags and groups"),
    h(
      "ul.tag-list",
      {},
      [...found].sort().map(([key, [kind, value]]) => {
        const hold = { kind, value, label: `${kind} ${value}` };
        const held = sameHold(prefs.hold, hold);
        const muted = prefs.avoidTags.includes(key);
        return h(
          "li",
          { dataset: { tag: key } },
          h("span", {}, `${kind} `, h("strong", {}, value)),
          toggle(held ? "Held" : "Hold", held, () => toggleHold(hold)),
          toggle(muted ? "Muted" : "Mute", muted, () => toggleAvoidTag(kind, value)),
        );
      }),
    ),
  );
}

function render(root, systems, talkgroups) {
  const bySystem = new Map(systems.map((s) => [s.id, []]));
  for (const t of talkgroups) {
    if (!bySystem.has(t.system)) bySystem.set(t.system, []);
    bySystem.get(t.system).push(t);
  }
  const labels = new Map(systems.map((s) => [s.id, s]));
  const hasActivity = [...systems, ...talkgroups].some((item) => COUNT in item || LAST in item);
  clear(
    root,
    h("h1", {}, "Talkgroups"),
    hasActivity ? null : h("p.note", {}, "This server does not report call counts or last activity yet."),
    [...bySystem].map(([id, tgs]) => {
      const system = labels.get(id) || { id };
      const sysMuted = prefs.avoidSystems.includes(id);
      const sysHold = { kind: "system", system: id, label: system.label || `System ${id}` };
      const sysHeld = sameHold(prefs.hold, sysHold);
      const tagged = tgs.some((t) => t.tag || t.group); // an empty column costs a phone 80 px
      return h(
        "section.panel",
        { dataset: { system: id } },
        h(
          "header.system",
          {},
          h(
            "h2",
            {},
            h("a", { href: `/search${query({ system: id })}`, "data-link": "" }, system.label || `System ${id}`),
            h("span.id", {}, ` ${id}`),
          ),
          h(
            "span.activity",
            {},
            typeof system[COUNT] === "number" ? `${system[COUNT]} calls` : "",
            system[LAST] ? ` · last ${when(system[LAST])}` : "",
          ),
          h(
            "span.actions",
            {},
            toggle(sysHeld ? "Held" : "Hold", sysHeld, () => toggleHold(sysHold)),
            toggle(sysMuted ? "Muted" : "Mute", sysMuted, () => toggleAvoidSystem(id)),
          ),
        ),
        h(
          "div.table-wrap",
          {},
          h(
            "table.talkgroups",
            {},
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                [
                  ["TG", "num"],
                  ["name", ""],
                  tagged ? ["tag / group", "tags"] : null,
                  ...(hasActivity ? [["calls", "num"], ["last call", "last"]] : []),
                  ["", "actions"],
                ]
                  .filter((c) => c !== null)
                  .map(([c, cls]) => h(cls ? `th.${cls}` : "th", { scope: "col" }, c)),
              ),
            ),
            h(
              "tbody",
              {},
              tgs.map((t) => {
                const muted = prefs.avoidTalkgroups.includes(tgKey(id, t.talkgroup));
                const name = t.label || t.name || `TG ${t.talkgroup}`;
                const hold = { kind: "talkgroup", system: id, talkgroup: t.talkgroup, label: `${name} (TG ${t.talkgroup})` };
                const held = sameHold(prefs.hold, hold);
                return h(
                  "tr",
                  { dataset: { talkgroup: t.talkgroup } },
                  h("td.num", {}, String(t.talkgroup)),
                  h(
                    "td",
                    {},
                    h(
                      "a",
                      { href: `/search${query({ system: id, talkgroup: t.talkgroup })}`, "data-link": "" },
                      name,
                    ),
                    t.transcribed === false
                      ? h(
                          "span.note.not-transcribed",
                          { title: "transcription.systems in the config turns it off: calls are stored only" },
                          " transcription off for this talkgroup",
                        )
                      : null,
                  ),
                  tagged ? h("td.tags", {}, [t.tag, t.group].filter(Boolean).join(" / ")) : null,
                  hasActivity ? activity(t) : null,
                  h(
                    "td.actions",
                    {},
                    toggle(held ? "Held" : "Hold", held, () => toggleHold(hold)),
                    toggle(muted ? "Muted" : "Mute", muted, () => toggleAvoidTalkgroup(id, t.talkgroup)),
                  ),
                );
              }),
            ),
          ),
        ),
      );
    }),
    tagsPanel(talkgroups),
    bySystem.size ? null : h("p.note", {}, "No systems yet: they are learned from uploads."),
  );
}

export function talkgroupsView(root) {
  let alive = true;
  let data = null;
  clear(root, h("h1", {}, "Talkgroups"), h("p.note", {}, "Loading…"));
  Promise.all([api("/api/systems"), api("/api/talkgroups")])
    .then(([s, t]) => {
      data = [s.systems, t.talkgroups];
      if (alive) render(root, ...data);
    })
    .catch((error) => alive && clear(root, h("h1", {}, "Talkgroups"), h("p.error", {}, error.message)));
  const onPrefs = () => data && alive && render(root, ...data);
  prefsChanged.addEventListener("change", onPrefs);
  return () => {
    alive = false;
    prefsChanged.removeEventListener("change", onPrefs);
  };
}
