// Full-text search over transcripts, labels and unit ids. The form's state is the URL
// (/search?q=…&system=…), so a result page is a link that survives a reload or a share. Words that
// name a talkgroup (its number, label, name or tag) also list the talkgroup itself above the calls,
// a link to browse its calls: what a scanner user typing "52198" or "fire disp" is looking for.

import { api, query } from "./api.js";
import { callCard } from "./cards.js";
import { navigate } from "./nav.js";
import { putCall, systemLabels } from "./store.js";
import { clear, h, isoToLocalInput, localInputToIso } from "./dom.js";

const FIELDS = ["q", "system", "talkgroup", "since", "until", "has_audio", "order"];

function option(value, label, selected) {
  return h("option", { value: String(value), selected: String(value) === String(selected ?? "") }, label);
}

async function fillTalkgroups(select, system, selected) {
  const body = await api(`/api/talkgroups${query({ system })}`).catch(() => ({ talkgroups: [] }));
  clear(
    select,
    option("", "any talkgroup", selected),
    body.talkgroups.map((t) => {
      const name = t.label || t.name || `TG ${t.talkgroup}`;
      return option(t.talkgroup, `${name} (${t.talkgroup})`, selected);
    }),
  );
  // A talkgroup from a link that this list does not know still counts.
  if (selected && select.value !== String(selected)) select.append(option(selected, `TG ${selected}`, selected));
}

/** Talkgroups the words name: the number exactly, or the words inside the label, name or tag. */
export function talkgroupsNamed(q, talkgroups) {
  const words = q.trim().toLowerCase().replace(/"/g, "");
  if (!words || words.includes(":")) return [];
  if (/^\d+$/.test(words)) return talkgroups.filter((t) => String(t.talkgroup) === words);
  return talkgroups.filter((t) =>
    [t.label, t.name, t.tag].some((v) => typeof v === "string" && v.toLowerCase().includes(words)),
  );
}

const MAX_TALKGROUPS_FOUND = 8;

async function fillFoundTalkgroups(box, q, system, labels) {
  const body = await api(`/api/talkgroups${query({ system })}`).catch(() => ({ talkgroups: [] }));
  const named = talkgroupsNamed(q, body.talkgroups);
  const found = named.slice(0, MAX_TALKGROUPS_FOUND);
  if (!found.length) return;
  clear(
    box,
    h("h2", {}, found.length === 1 ? "Talkgroup" : "Talkgroups"),
    h(
      "ul",
      {},
      found.map((t) =>
        h(
          "li",
          { dataset: { system: t.system, talkgroup: t.talkgroup } },
          h(
            "a",
            { href: `/search${query({ system: t.system, talkgroup: t.talkgroup })}`, "data-link": "" },
            `${t.label || t.name || `TG ${t.talkgroup}`} (TG ${t.talkgroup})`,
          ),
          ` · ${labels?.get(t.system) || `System ${t.system}`}`,
          typeof t.call_count === "number" ? ` · ${t.call_count} calls` : "",
        ),
      ),
    ),
    named.length > found.length ? h("p.note", {}, `and ${named.length - found.length} more: add words to narrow them`) : null,
  );
  box.hidden = false;
}

export function searchView(root, params) {
  const p = Object.fromEntries(FIELDS.map((f) => [f, params.get(f) || ""]));
  const q = h("input", {
    type: "search",
    name: "q",
    value: p.q,
    placeholder: 'words, "a phrase", engin*, 10-50',
    "aria-label": "Search",
  });
  const system = h("select", { name: "system", "aria-label": "System" }, option("", "any system", p.system));
  const talkgroup = h(
    "select",
    { name: "talkgroup", "aria-label": "Talkgroup" },
    option("", "any talkgroup", p.talkgroup),
  );
  const since = h("input", { type: "datetime-local", name: "since", value: p.since ? isoToLocalInput(p.since) : "" });
  const until = h("input", { type: "datetime-local", name: "until", value: p.until ? isoToLocalInput(p.until) : "" });
  const hasAudio = h("input", { type: "checkbox", name: "has_audio", checked: p.has_audio === "true" });
  const order = h(
    "select",
    { name: "order", "aria-label": "Order" },
    option("newest", "newest first", p.order || "newest"),
    option("relevance", "most relevant (transcripts first)", p.order),
  );
  const form = h(
    "form.search",
    { role: "search" },
    h("div.search-row", {}, q, h("button", { type: "submit" }, "Search")),
    h(
      "div.filters",
      {},
      system,
      talkgroup,
      h("label", {}, "since ", since),
      h("label", {}, "until ", until),
      h("label.check", {}, hasAudio, " has audio"),
      order,
    ),
  );
  const note = h("p.note", { role: "status" });
  const list = h("div.cards", { id: "results" });
  const more = h("button.more", { type: "button", hidden: true }, "More results");
  const found = h("section.found-talkgroups", { hidden: true });
  clear(root, h("h1.visually-hidden", {}, "Search"), form, found, note, list, more);

  let alive = true;
  let labels = null;
  systemLabels().then((map) => {
    labels = map;
    if (alive && p.q) fillFoundTalkgroups(found, p.q, p.system, map);
    if (!alive) return;
    const choices = [...map].map(([id, label]) => option(id, label || `System ${id}`, p.system));
    clear(system, option("", "any system", p.system), choices);
    if (p.system && system.value !== p.system) system.append(option(p.system, `System ${p.system}`, p.system));
  });
  fillTalkgroups(talkgroup, p.system, p.talkgroup);
  system.addEventListener("change", () => fillTalkgroups(talkgroup, system.value, ""));

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate(
      `/search${query({
        q: q.value.trim(),
        system: system.value,
        talkgroup: talkgroup.value,
        since: localInputToIso(since.value),
        until: localInputToIso(until.value),
        has_audio: hasAudio.checked ? "true" : "",
        order: order.value === "newest" ? "" : order.value,
      })}`,
    );
  });

  let shown = 0;
  async function fetchPage(cursor) {
    more.disabled = true;
    note.classList.remove("error");
    note.textContent = cursor ? note.textContent : "Searching…";
    try {
      // No words, only filters (a talkgroup's link): browse the calls, newest first.
      const { system: s, talkgroup: t, since: from, until: to } = p;
      const body = p.q
        ? await api(`/api/search${query({ ...p, cursor, limit: 25 })}`)
        : await api(`/api/calls${query({ system: s, talkgroup: t, since: from, until: to, cursor, limit: 25 })}`);
      if (!alive) return;
      const results = body.results || body.calls.map((call) => ({ call }));
      for (const result of results) {
        const call = putCall(result.call);
        list.append(callCard(call, { labels, snippet: result.snippet }));
      }
      shown += results.length;
      const count = `${shown} call${shown === 1 ? "" : "s"}${body.next_cursor ? " so far" : ""}`;
      note.textContent = shown ? count : "No calls match.";
      more.hidden = !body.next_cursor;
      more.onclick = () => fetchPage(body.next_cursor);
    } catch (error) {
      if (!alive) return;
      note.textContent = `Search failed: ${error.message}`;
      note.classList.add("error");
    } finally {
      more.disabled = false;
    }
  }

  if (FIELDS.some((f) => p[f])) fetchPage(null);
  else note.textContent = "Search transcripts, talkgroup and system names, and unit ids.";
  if (!p.q) q.focus();
  return () => {
    alive = false;
  };
}
