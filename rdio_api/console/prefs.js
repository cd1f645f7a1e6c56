// The listener's scanner choices, kept in localStorage so a reload or a new tab keeps them:
// live playback on/off, volume, the held talkgroup and the avoided ("muted") systems/talkgroups.

const ITEM = "rdio.scanner";
const DEFAULTS = { live: false, volume: 0.8, hold: null, avoidSystems: [], avoidTalkgroups: [] };

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(ITEM) || "{}");
    return { ...DEFAULTS, ...(saved && typeof saved === "object" ? saved : {}) };
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

export function isAvoided(call) {
  return (
    prefs.avoidSystems.includes(call.system) || prefs.avoidTalkgroups.includes(tgKey(call.system, call.talkgroup))
  );
}

/** Whether live playback should play this call now: not avoided, and on the held talkgroup if any. */
export function wanted(call) {
  if (isAvoided(call)) return false;
  const hold = prefs.hold;
  return !hold || (hold.system === call.system && hold.talkgroup === call.talkgroup);
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

export function toggleHold(system, talkgroup) {
  const held = prefs.hold && prefs.hold.system === system && prefs.hold.talkgroup === talkgroup;
  savePrefs({ hold: held || system === undefined ? null : { system, talkgroup } });
}
