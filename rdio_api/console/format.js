// How a scanner user reads a call at a glance: a colour per talkgroup (the same on every page and
// every visit), the frequency in MHz, the full local date and time with its zone.

/** A stable hue for a talkgroup: FNV-1a of "system:talkgroup" onto 360 degrees. */
export function talkgroupHue(call) {
  let hash = 0x811c9dc5;
  for (const ch of `${call.system}:${call.talkgroup}`) {
    hash ^= ch.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % 360;
}

/** Paint `el`'s talkgroup colour (the CSS reads --tg-hue). Set through the CSSOM: the page's CSP
 * allows no style attributes. */
export function paintTalkgroup(el, call) {
  el.style.setProperty("--tg-hue", String(talkgroupHue(call)));
  return el;
}

/** 851012500 (Hz) -> "851.0125 MHz"; "" when unknown. */
export function frequencyText(hz) {
  if (typeof hz !== "number" || !Number.isFinite(hz) || hz <= 0) return "";
  return `${(hz / 1e6).toFixed(4)} MHz`;
}

const fullFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  timeZoneName: "short",
});
const shortFormat = new Intl.DateTimeFormat(undefined, {
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** "Sat, Dec 5, 2026, 12:10:33 GMT+1": the date, local time and zone of an ISO timestamp. */
export function fullDateTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso || "" : fullFormat.format(date);
}

/** "12/05, 12:10:33": the one-line list's date and time, always with the date. */
export function shortDateTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso || "" : shortFormat.format(date);
}

/** Give each body cell its column's name (data-label), so a phone can show a table's rows as small
 * blocks with no sideways scroll (console.css). Rows with merged cells are left as they are. */
export function labelCells(table) {
  const names = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
  for (const row of table.querySelectorAll("tbody tr")) {
    if (row.cells.length !== names.length) continue;
    [...row.cells].forEach((cell, i) => (cell.dataset.label = names[i]));
  }
  return table;
}
