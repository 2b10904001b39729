// The WebSocket to the gateway: connects to /ws beside the page, hands each frame to the
// caller, and reconnects with exponential backoff and jitter when the connection drops.
// The gateway starts every connection with a snapshot, so a reconnect resyncs by itself.

/**
 * Delay before reconnect attempt `attempt` (0-based): doubling from `baseMs` up to `maxMs`,
 * then scaled by a random factor in [0.5, 1) so a wall of screens does not reconnect in step
 * after a gateway restart.
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 30_000, random = Math.random } = {}) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling * (0.5 + random() * 0.5));
}

/**
 * `ws:` or `wss:` URL of `path` relative to the page, so a reverse-proxy prefix still works.
 * A `machines=A1,B2` in the page's query goes along: the gateway then sends only those
 * machines (a screen per hall). So does a `token=...`: the gateway's bearer token, which a
 * browser cannot send as a header on a WebSocket upgrade.
 */
export function socketUrl(location, path = 'ws') {
  const page = new URL(location.href);
  const url = new URL(path, page);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '';
  url.hash = '';
  const machines = page.searchParams.get('machines');
  if (machines) url.searchParams.set('machines', machines);
  const token = page.searchParams.get('token');
  if (token) url.searchParams.set('token', token);
  return url.href;
}

/**
 * Keeps one WebSocket open. Callbacks: `onFrame(object)`, `onState({state, retryAt})` with
 * state `connecting`, `open` or `closed`.
 */
export class Connection {
  constructor(url, { onFrame, onState, healthUrl = null, healthEveryMs = 30_000, connectTimeoutMs = 10_000 }) {
    this.url = url;
    this.onFrame = onFrame;
    this.onState = onState;
    this.healthUrl = healthUrl;
    this.healthEveryMs = healthEveryMs;
    this.connectTimeoutMs = connectTimeoutMs;
    this.attempt = 0;
    this.socket = null;
    this.retryTimer = null;
    this.healthTimer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.#connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.healthTimer);
    this.socket?.close(1000);
  }

  #connect() {
    this.onState({ state: 'connecting', retryAt: null });
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      console.warn('scrap-pulse: cannot open WebSocket', error);
      this.#scheduleRetry();
      return;
    }
    this.socket = socket;
    // A blackholed address can leave a socket connecting for minutes: give up sooner.
    const connectTimer = setTimeout(() => this.#drop(socket), this.connectTimeoutMs);
    socket.addEventListener('open', () => {
      clearTimeout(connectTimer);
      this.onState({ state: 'open', retryAt: null });
      this.#watchHealth(socket);
    });
    socket.addEventListener('message', (event) => {
      if (this.socket !== socket || typeof event.data !== 'string') return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        console.warn('scrap-pulse: ignoring a frame that is not JSON');
        return;
      }
      // The first snapshot proves the gateway works; only then is the backoff forgiven, so a
      // gateway that accepts and drops at once still gets slower retries.
      if (frame?.type === 'snapshot') this.attempt = 0;
      this.onFrame(frame);
    });
    socket.addEventListener('close', () => {
      clearTimeout(connectTimer);
      this.#drop(socket);
    });
    // 'error' is always followed by 'close', which does the work.
  }

  /** Gives up on `socket` (closed, or found dead) and plans the next attempt. */
  #drop(socket) {
    if (this.socket !== socket) return;
    this.socket = null;
    clearInterval(this.healthTimer);
    // A dead peer never answers the closing handshake; we do not wait for it.
    if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.close();
    if (!this.stopped) this.#scheduleRetry();
  }

  #scheduleRetry() {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.onState({ state: 'closed', retryAt: Date.now() + delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.#connect(), delay);
  }

  /**
   * A gateway host that vanishes without a FIN (power cut, network split) leaves a browser
   * WebSocket looking open for hours, and the gateway may be quiet legitimately. A cheap
   * periodic HTTP probe notices; a 503 (broker down) still means the gateway is alive.
   */
  #watchHealth(socket) {
    clearInterval(this.healthTimer);
    if (!this.healthUrl) return;
    this.healthTimer = setInterval(async () => {
      try {
        await fetch(this.healthUrl, { cache: 'no-store', signal: AbortSignal.timeout(10_000) });
      } catch {
        this.#drop(socket);
      }
    }, this.healthEveryMs);
  }
}
