// The listener's scanner choices, kept in localStorage so a reload or a new tab keeps them: live
// playback on/off, volume, the feed's look (one line per call, or cards), the hold and the avoided
// ("muted") systems, talkgroups and talkgroup tags/groups.
//
// A hold is one of {kind: "talkgroup", system, talkgroup}, {kind: "system", system} or
// {kind: "tag" | "group", value}, each with the `label` it was held by (what the scanner bar shows).
// Tags and groups are the recorder's talkgroup tag ("Fire Dispatch") and group ("Fire"): a scanner
// user mutes a whole service at once, across systems, the way rdio-scanner's group/tag toggles do.

const ITEM = "rdio.scanner";
const DEFAULTS = {
  live: false,
  volume: 0.8,
  view: "list",
  hold: null,
  avoidSystems: [],
  avoidTalkgroups: [],
  avoidTags: [],
};

/** A hold saved before holds had kinds ({system, talkgroup}) is a talkgroup hold. */
function upgradeHold(hold) {
  if (!hold || typeof hold !== "object") return null;
  if (hold.kind) return hold;
  return { kind: "talkgroup", system: hold.system, talkgroup: hold.talkgroup, label: `TG ${hold.talkgroup}` };
}

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(ITEM) || "{}");
    const merged = { ...DEFAULTS, ...(saved && typeof saved === "object" ? saved : {}) };
    return { ...merged, hold: upgradeHold(merged.hold) };
  } catch {
    return { ...DEFAULTS };
  }
}

export const prefs = load();
export const prefsChanged = new EventTarget();

export function savePrefs(changes) {
  Object.assign(prefs, changes);
  localStorage.setItem(ITEM, JSON.stringify(prefs));
  prefsChanged.dispatchEvent(new Event("change"));
}

export const tgKey = (system, talkgroup) => `${system}:${talkgroup}`;
export const tagKey = (kind, value) => `${kind}:${value}`;

/** The tag/group keys of a call's talkgroup ("tag:Fire Dispatch", "group:Fire"). */
function tagKeys(call) {
  return [
    call.talkgroup_tag ? tagKey("tag", call.talkgroup_tag) : null,
    call.talkgroup_group ? tagKey("group", call.talkgroup_group) : null,
  ].filter(Boolean);
}

export function isAvoided(call) {
  return (
    prefs.avoidSystems.includes(call.system) ||
    prefs.avoidTalkgroups.includes(tgKey(call.system, call.talkgroup)) ||
    tagKeys(call).some((key) => prefs.avoidTags.includes(key))
  );
}

/** Whether `hold` takes in `call`. */
export function holds(hold, call) {
  if (!hold) return false;
  if (hold.kind === "system") return hold.system === call.system;
  if (hold.kind === "tag") return call.talkgroup_tag === hold.value;
  if (hold.kind === "group") return call.talkgroup_group === hold.value;
  return hold.system === call.system && hold.talkgroup === call.talkgroup;
}

/** Whether live playback should play this call now: not avoided, and inside the hold if any. */
export function wanted(call) {
  if (isAvoided(call)) return false;
  return !prefs.hold || holds(prefs.hold, call);
}

export function sameHold(a, b) {
  if (!a || !b || a.kind !== b.kind) return false;
  if (a.kind === "tag" || a.kind === "group") return a.value === b.value;
  return a.system === b.system && (a.kind === "system" || a.talkgroup === b.talkgroup);
}

/** Hold `hold` ({kind, …, label}), or release it when it is the one held; null releases any. */
export function toggleHold(hold) {
  savePrefs({ hold: !hold || sameHold(prefs.hold, hold) ? null : hold });
}

export function toggleAvoidSystem(system) {
  const list = prefs.avoidSystems.filter((s) => s !== system);
  if (list.length === prefs.avoidSystems.length) list.push(system);
  savePrefs({ avoidSystems: list });
}

export function toggleAvoidTalkgroup(system, talkgroup) {
  const key = tgKey(system, talkgroup);
  const list = prefs.avoidTalkgroups.filter((k) => k !== key);
  if (list.length === prefs.avoidTalkgroups.length) list.push(key);
  savePrefs({ avoidTalkgroups: list });
}

/** Mute or unmute every talkgroup with this tag (kind "tag") or group (kind "group"). */
export function toggleAvoidTag(kind, value) {
  const key = tagKey(kind, value);
  const list = prefs.avoidTags.filter((k) => k !== key);
  if (list.length === prefs.avoidTags.length) list.push(key);
  savePrefs({ avoidTags: list });
}
