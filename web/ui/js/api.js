// The HTTP API: JSON requests with the session cookie; errors carry the server's message and fields.

import { t } from './i18n.js';

/** An API error: HTTP status, the server's `error` text, its `fields` and the raw body. */
export class ApiError extends Error {
  constructor(status, message, fields = [], body = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.fields = Array.isArray(fields) ? fields : [];
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

let onUnauthorized = () => {};
/** Called on any 401 (except the login request itself): the session is gone. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** `fetch` with JSON in and out. Throws ApiError for any non-2xx answer. */
export async function api(method, path, body, { raw = false, quiet401 = false } = {}) {
  const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, t('err_network', e.message || e));
  }
  if (res.ok) {
    if (raw) return res;
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: keep the text */
  }
  let message = data && typeof data.error === 'string' ? data.error : '';
  if (!message) {
    if (res.status === 403) message = t('err_forbidden');
    else if (res.status === 404) message = t('err_not_found', path);
    else message = (text && text.length < 300 ? text : '') || t('err_http', res.status);
  }
  let retryAfter = Number(res.headers.get('Retry-After'));
  if (!Number.isFinite(retryAfter) || retryAfter <= 0) {
    retryAfter = data && Number(data.retry_after_s ?? data.retry_after ?? data.retry_in_s);
    if (!Number.isFinite(retryAfter) || retryAfter <= 0) retryAfter = null;
  }
  const err = new ApiError(res.status, message, data && data.fields, data, retryAfter);
  if (res.status === 401 && !quiet401) onUnauthorized(err);
  throw err;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body, opts);
export const put = (path, body, opts) => api('PUT', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

/** A query string from an object, skipping empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The error's text with its field messages, for a toast or a banner. */
export function errorText(e) {
  if (!(e instanceof ApiError)) return String((e && e.message) || e);
  const fields = e.fields.map((f) => `${f.field}: ${f.message}`).join('；');
  return fields ? `${e.message}（${fields}）` : e.message;
}
