// Systems and talkgroups this key may see, with call counts and last activity where the API gives
// them, and the scanner's hold/mute choices for each. A name links to a search on it.

import { api, query } from "./api.js";
import { prefs, prefsChanged, tgKey, toggleAvoidSystem, toggleAvoidTalkgroup, toggleHold } from "./prefs.js";
import { clear, h, when } from "./dom.js";

// Field names read from /api/systems and /api/talkgroups items, when the server sends them.
const COUNT = "call_count";
const LAST = "last_call_at";

function activity(item) {
  const count = item[COUNT];
  const last = item[LAST];
  return [
    h("td.num", {}, typeof count === "number" ? String(count) : "—"),
    h("td", {}, last ? h("time", { datetime: last, title: last }, when(last)) : "—"),
  ];
}

function toggle(label, on, action) {
  return h("button.toggle", { type: "button", "aria-pressed": String(on), onclick: action }, label);
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
          toggle(sysMuted ? "Muted" : "Mute", sysMuted, () => toggleAvoidSystem(id)),
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
                ["TG", "name", tagged ? "tag / group" : null, ...(hasActivity ? ["calls", "last call"] : []), ""]
                  .filter((c) => c !== null)
                  .map((c) => h("th", { scope: "col" }, c)),
              ),
            ),
            h(
              "tbody",
              {},
              tgs.map((t) => {
                const muted = prefs.avoidTalkgroups.includes(tgKey(id, t.talkgroup));
                const held = prefs.hold?.system === id && prefs.hold?.talkgroup === t.talkgroup;
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
                      t.label || t.name || `TG ${t.talkgroup}`,
                    ),
                    t.transcribed === false
                      ? h(
                          "span.note.not-transcribed",
                          { title: "transcription.systems in the config turns it off: calls are stored only" },
                          " transcription off for this talkgroup",
                        )
                      : null,
                  ),
                  tagged ? h("td", {}, [t.tag, t.group].filter(Boolean).join(" / ")) : null,
                  hasActivity ? activity(t) : null,
                  h(
                    "td.actions",
                    {},
                    toggle(held ? "Held" : "Hold", held, () => toggleHold(id, t.talkgroup)),
                    toggle(muted ? "Muted" : "Mute", muted, () => toggleAvoidTalkgroup(id, t.talkgroup)),
                  ),
                );
              }),
            ),
          ),
        ),
      );
    }),
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
