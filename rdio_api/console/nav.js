// Navigation inside the single page: push the URL, then let the router (app.js) render it.

export function navigate(url) {
  history.pushState(null, "", url);
  window.dispatchEvent(new PopStateEvent("popstate"));
  window.scrollTo(0, 0);
}
