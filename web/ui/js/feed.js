// The command-hall feed: one WebSocket for the whole app (cookie auth), reconnecting with the cursor of
// the last alert seen so the server replays what was missed. Messages: `alert`, `alert_update`,
// `health`, `resync` (the server closes after it; we reconnect from our cursor).

import { get } from './api.js';

const listeners = new Set();
const statusListeners = new Set();
let ws = null;
let cursor = null;
let stopped = true;
let backoff = 1000;
let timer = null;
let status = 'down';
let generation = 0;

function setStatus(s) {
  status = s;
  for (const fn of statusListeners) fn(s);
}

/** `live`, `connecting` or `down`. */
export function feedStatus() {
  return status;
}

/** Calls `fn(status)` on every change; returns the unsubscribe function. */
export function onFeedStatus(fn) {
  statusListeners.add(fn);
  return () => statusListeners.delete(fn);
}

/** Calls `fn(message)` for every feed message; returns the unsubscribe function. */
export function onFeed(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** The id of the newest alert seen (ULIDs sort by time). */
export function noteAlertId(id) {
  if (id && (!cursor || id > cursor)) cursor = id;
}

function url() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = cursor ? `?cursor=${encodeURIComponent(cursor)}` : '';
  return `${proto}//${location.host}/api/alerts/feed${q}`;
}

function connect() {
  const gen = generation;
  clearTimeout(timer);
  setStatus('connecting');
  let opened = false;
  const sock = new WebSocket(url());
  ws = sock;
  sock.addEventListener('open', () => {
    if (gen !== generation) return;
    opened = true;
    backoff = 1000;
    setStatus('live');
  });
  sock.addEventListener('message', (ev) => {
    if (gen !== generation) return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (msg.kind === 'alert') noteAlertId(msg.id);
    if (msg.kind === 'resync') {
      // Too slow for the live stream: the server closes; reconnecting replays after our cursor.
      sock.close();
      return;
    }
    for (const fn of listeners) {
      try {
        fn(msg);
      } catch (e) {
        console.error('feed listener failed', e);
      }
    }
  });
  sock.addEventListener('close', () => {
    if (gen !== generation || stopped) return;
    ws = null;
    setStatus('down');
    if (!opened) {
      // The upgrade was refused: maybe the session ended (a 401 sends the app to the login page).
      get('/api/auth/me').catch(() => {});
    }
    timer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 15000);
  });
}

/** Starts the feed after the newest stored alert (so a page's list and the feed leave no gap). */
export async function startFeed() {
  stopFeed();
  stopped = false;
  const gen = generation;
  try {
    const newest = await get('/api/alerts?limit=1');
    if (Array.isArray(newest) && newest[0]) noteAlertId(newest[0].id);
  } catch {
    /* connect live-only; pages load their own lists */
  }
  if (gen === generation && !stopped) connect();
}

/** Closes the feed (logout). */
export function stopFeed() {
  stopped = true;
  generation += 1;
  clearTimeout(timer);
  if (ws) {
    try {
      ws.close();
    } catch {
      /* already closed */
    }
  }
  ws = null;
  cursor = null;
  backoff = 1000;
  setStatus('down');
}
