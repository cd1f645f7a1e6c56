// A call's link and its audio, from any place the call is shown. The audio route needs the key in
// a header, so a plain <a download> cannot fetch it: the file is fetched with the key and saved
// from a blob: URL. What happened is said in the page's one status line (#toast).

import { api } from "./api.js";

const EXTENSIONS = { "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/wav": "wav", "audio/ogg": "ogg", "audio/flac": "flac" };

export function callUrl(call) {
  return new URL(`/calls/${call.id}`, location.origin).href;
}

let toastTimer = null;

/** Say `text` in the status line for a few seconds. */
export function toast(text, error = false) {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = text;
  el.classList.toggle("error", error);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 4000);
}

/** Copy the call page's address; without clipboard access the address is shown to copy by hand. */
export async function copyLink(call) {
  const url = callUrl(call);
  try {
    await navigator.clipboard.writeText(url);
    toast(`Link copied: ${url}`);
  } catch {
    toast(`Copy this link: ${url}`);
  }
  return url;
}

/** The name the file is saved as: the uploaded name when it has one, else call-<id>.<ext>. */
export function audioFileName(call, mime) {
  const uploaded = (call.audio_name || "").replace(/[\\/:*?"<>|\u0000-\u001f]/g, "_").trim();
  if (uploaded) return uploaded;
  const ext = EXTENSIONS[(mime || call.audio_mime || "").split(";")[0]] || "audio";
  return `call-${call.id}.${ext}`;
}

export async function downloadAudio(call) {
  try {
    const response = await api(call.audio_url || `/api/calls/${call.id}/audio`, { raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = audioFileName(call, blob.type);
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30_000);
    toast(`Saving ${link.download}`);
  } catch (error) {
    toast(`Cannot download call ${call.id}: ${error.message}`, true);
  }
}
