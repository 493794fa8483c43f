// The form's service worker (scope /collect/): the shell and its assets cache-first, so the form opens without
// network; the API goes to the network, except the form's choices (network first, the last answer when offline).
const VERSION = "__VERSION__";
const SHELL = ["__SHELL__"];
const SHELL_CACHE = "collect-shell-" + VERSION;
const API_CACHE = "collect-api";
const CHOICES = "/api/enrolments/form";

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names
        .filter((name) => name.startsWith("collect-shell-") && name !== SHELL_CACHE)
        .map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

async function fromShell(request, path) {
  const cached = await caches.match(path, { cacheName: SHELL_CACHE, ignoreSearch: true });
  return cached || fetch(request);
}

async function choices(request) {
  try {
    const response = await fetch(request);
    if (response.ok) {
      const cache = await caches.open(API_CACHE);
      await cache.put(CHOICES, response.clone());
    }
    return response;
  } catch (error) {
    const cached = await caches.match(CHOICES, { cacheName: API_CACHE });
    if (cached) return cached;
    throw error;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname === CHOICES) {
    event.respondWith(choices(request));
  } else if (request.mode === "navigate" && url.pathname.startsWith("/collect/")) {
    event.respondWith(fromShell(request, "/collect/"));
  } else if (SHELL.includes(url.pathname)) {
    event.respondWith(fromShell(request, url.pathname));
  }
  // Everything else (the enrolments API above all) goes to the network, never cached.
});
