// The gateway's JSON and CSV API beside the page: URLs relative to the page (so a
// reverse-proxy prefix still works) and the bearer token of the page's `?token=`, sent as a
// header, which the gateway requires on every /api path but /api/health when it has one.

/** The token in the page's address, or null. */
export function pageToken(location) {
  return new URL(location.href).searchParams.get('token') || null;
}

/** `path` beside the page with `params` (an object; null and undefined values left out). */
export function apiUrl(location, path, params = {}) {
  const url = new URL(path, location.href);
  url.search = '';
  url.hash = '';
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) url.searchParams.set(name, String(value));
  }
  return url.href;
}

/** Request headers with the page's token, if any. */
export function apiHeaders(location) {
  const token = pageToken(location);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * GET `url` with the token. Resolves with the Response whatever its status; rejects on a
 * network error or after `timeoutMs`.
 */
export function apiGet(location, url, { timeoutMs = 15_000 } = {}) {
  return fetch(url, { headers: apiHeaders(location), cache: 'no-store', signal: AbortSignal.timeout(timeoutMs) });
}

/** The file name of a `Content-Disposition: attachment; filename="..."` header, or `fallback`. */
export function attachmentName(header, fallback) {
  const match = /filename="([^"]+)"/.exec(header ?? '') ?? /filename=([^;\s]+)/.exec(header ?? '');
  return match ? match[1] : fallback;
}
