// One <audio> element for the whole page, driven like a scanner: with live playback on, calls are
// queued in the order they arrive and played one after the other; avoided systems/talkgroups are
// never queued, and a held talkgroup is the only one queued. A call played by hand (a card's play
// button, a segment click) interrupts, then the queue goes on.
//
// Audio is fetched with the key in a header and played from a blob: URL; putting the key in the
// <audio src> query string would leave it in logs. The last few blobs are kept for replays.
//
// Events (on `player`): "state" when anything shown in the scanner bar changes, "time" {callId,
// time} while audio plays (drives the segment highlight).

import { api } from "./api.js";
import { prefs, savePrefs, wanted } from "./prefs.js";

const KEEP_BLOBS = 12;
const MAX_QUEUE = 200;

class Player extends EventTarget {
  constructor() {
    super();
    this.audio = null;
    this.queue = [];
    this.current = null; // the call loaded in the audio element
    this.last = null; // the last call that started playing (for "replay")
    this.blobs = new Map(); // call id -> object URL, oldest first
    this.loading = 0; // a token: a newer play() makes an older, still-loading one give up
    this.busy = false;
    this.error = "";
  }

  attach(audio) {
    this.audio = audio;
    audio.volume = prefs.volume;
    audio.addEventListener("ended", () => this.next());
    audio.addEventListener("play", () => this.changed());
    audio.addEventListener("pause", () => this.changed());
    audio.addEventListener("timeupdate", () => this.tick());
    audio.addEventListener("seeked", () => this.tick());
    audio.addEventListener("volumechange", () => {
      if (Math.abs(audio.volume - prefs.volume) > 0.001) savePrefs({ volume: audio.volume });
    });
  }

  get playing() {
    return Boolean(this.audio && !this.audio.paused && !this.audio.ended);
  }

  changed() {
    this.dispatchEvent(new Event("state"));
  }

  tick() {
    if (!this.current) return;
    this.dispatchEvent(new CustomEvent("time", { detail: { callId: this.current.id, time: this.audio.currentTime } }));
  }

  setLive(on) {
    savePrefs({ live: on });
    if (!on) this.queue = [];
    this.changed();
  }

  setVolume(volume) {
    this.audio.volume = volume;
  }

  /** A call just arrived on the event stream. */
  arrived(call) {
    if (!prefs.live || !wanted(call)) return;
    this.queue.push(call);
    if (this.queue.length > MAX_QUEUE) this.queue.shift();
    if (!this.playing && !this.busy) this.next();
    else this.changed();
  }

  /** Drop queued calls that a new avoid/hold choice excludes. */
  refilter() {
    this.queue = this.queue.filter(wanted);
    this.changed();
  }

  async next() {
    while (this.queue.length) {
      const call = this.queue.shift();
      if (!wanted(call)) continue;
      const outcome = await this.play(call);
      if (outcome !== "failed") return; // started, or a call played by hand took over
    }
    this.changed();
  }

  skip() {
    this.audio.pause();
    this.next();
  }

  replay() {
    if (this.last) this.play(this.last);
  }

  toggle() {
    if (!this.current) return this.next();
    if (this.audio.paused) return this.audio.play().catch((e) => this.fail(e));
    this.audio.pause();
  }

  /** Play `call` from `at` seconds: "started", "failed", or "superseded" by a newer play(). */
  async play(call, at = 0) {
    const token = ++this.loading;
    this.busy = true;
    this.error = "";
    try {
      if (this.current?.id !== call.id) {
        const url = await this.blobUrl(call);
        if (token !== this.loading) return "superseded";
        this.audio.pause();
        this.current = call;
        this.audio.src = url;
      }
      this.last = call;
      this.audio.currentTime = at;
      await this.audio.play();
      return "started";
    } catch (error) {
      if (token !== this.loading) return "superseded";
      this.fail(error, call);
      return "failed";
    } finally {
      if (token === this.loading) this.busy = false;
      this.changed();
    }
  }

  /** Seek within the loaded call, or load it and start there. */
  seek(call, at) {
    if (this.current?.id === call.id) {
      this.audio.currentTime = at;
      if (this.audio.paused) this.audio.play().catch((e) => this.fail(e));
      return;
    }
    this.play(call, at);
  }

  fail(error, call) {
    this.error = `${call ? `call ${call.id}: ` : ""}${error.message || error}`;
    this.changed();
  }

  async blobUrl(call) {
    const known = this.blobs.get(call.id);
    if (known) {
      this.blobs.delete(call.id); // re-insert: most recently used last
      this.blobs.set(call.id, known);
      return known;
    }
    const response = await api(call.audio_url || `/api/calls/${call.id}/audio`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    this.blobs.set(call.id, url);
    for (const [id, old] of this.blobs) {
      if (this.blobs.size <= KEEP_BLOBS) break;
      if (id === this.current?.id) continue;
      URL.revokeObjectURL(old);
      this.blobs.delete(id);
    }
    return url;
  }
}

export const player = new Player();
