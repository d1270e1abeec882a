// Small DOM helpers: element builders, formatting, toasts and dialogs.

import { t, getLang } from './i18n.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el && !(el instanceof SVGElement)) el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An HTML element: `h('button', {class: 'x', onclick: f}, 'text', child)`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const TZ = 'Asia/Shanghai';
const fmtCache = new Map();
function formatter(opts) {
  const key = JSON.stringify(opts) + getLang();
  if (!fmtCache.has(key)) {
    fmtCache.set(key, new Intl.DateTimeFormat(getLang() === 'en' ? 'en-GB' : 'zh-CN', { timeZone: TZ, hourCycle: 'h23', ...opts }));
  }
  return fmtCache.get(key);
}

function parts(ms, opts) {
  const out = {};
  for (const p of formatter(opts).formatToParts(new Date(ms))) out[p.type] = p.value;
  return out;
}

/** `2024-06-01 08:30:05`, China Standard Time (the time of the cameras and the schedules). */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return '';
  const p = parts(ms, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
}

/** `08:30:05` (CST). */
export function fmtClock(ms) {
  const p = parts(ms, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return `${p.hour}:${p.minute}:${p.second}`;
}

/** `2024-06-01` (CST) of a unix ms instant. */
export function dayKey(ms) {
  const p = parts(ms, { year: 'numeric', month: '2-digit', day: '2-digit' });
  return `${p.year}-${p.month}-${p.day}`;
}

/** A duration in words: `5 分钟`. */
export function fmtDuration(ms) {
  const sec = Math.max(0, Math.round(ms / 1000));
  if (sec < 60) return t('seconds', sec);
  if (sec < 3600) return t('minutes', Math.floor(sec / 60));
  if (sec < 86400) return t('hours', Math.floor(sec / 3600));
  return t('days', Math.floor(sec / 86400));
}

/** `5 分钟前`. */
export function fmtAgo(ms) {
  return t('ago', fmtDuration(Date.now() - ms));
}

/** `97.5%`, or `—` for null. */
export function pct(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  return `${(x * 100).toFixed(digits)}%`;
}

/** Area path as shown: `示范县 / 城关镇 / 东街社区`. */
export function fmtArea(path) {
  if (!path) return '';
  const list = Array.isArray(path) ? path : String(path).split('/');
  return list.filter(Boolean).join(' / ');
}

let toastRegion;
/** A short message in the corner (announced to screen readers); `kind` is `ok` or `error`. */
export function toast(text, kind = 'ok', ms = 5000) {
  if (!toastRegion) {
    toastRegion = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite', 'data-testid': 'toasts' });
    document.body.append(toastRegion);
  }
  const el = h('div', { class: ['toast', `toast-${kind}`], 'data-testid': `toast-${kind}` }, text);
  toastRegion.append(el);
  setTimeout(() => el.remove(), kind === 'error' ? Math.max(ms, 10000) : ms);
}

/** Opens a modal dialog with a title and body; returns {dialog, close}. Esc and the close button close it. */
export function openDialog(title, body, { testid = 'dialog', wide = false, onClose } = {}) {
  const closeBtn = h('button', { class: 'btn btn-ghost', type: 'button', 'data-testid': 'dialog-close', 'aria-label': t('close') }, '✕');
  const dialog = h(
    'dialog',
    { class: ['dialog', wide && 'dialog-wide'], 'data-testid': testid, 'aria-labelledby': `${testid}-title` },
    h('header', { class: 'dialog-head' }, h('h2', { id: `${testid}-title` }, title), closeBtn),
    h('div', { class: 'dialog-body' }, body),
  );
  const close = () => dialog.close();
  closeBtn.addEventListener('click', close);
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (onClose) onClose();
  });
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) close();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close };
}

/**
 * Asks before something that cannot be undone: a dialog with the question, Cancel and the action's
 * button (red when `danger`). Resolves true only when the action's button was pressed.
 */
export function confirmDialog(title, text, { okText = t('confirm'), danger = true, testid = 'confirm' } = {}) {
  return new Promise((resolve) => {
    let answer = false;
    const ok = h('button', { class: ['btn', danger ? 'btn-danger' : 'btn-primary'], type: 'button', 'data-testid': 'confirm-ok' }, okText);
    const cancel = h('button', { class: 'btn', type: 'button', 'data-testid': 'confirm-cancel' }, t('cancel'));
    const { close } = openDialog(title, [
      h('p', { class: 'confirm-text', 'data-testid': 'confirm-text' }, text),
      h('div', { class: 'form-actions' }, cancel, ok),
    ], { testid, onClose: () => resolve(answer) });
    ok.addEventListener('click', () => {
      answer = true;
      close();
    });
    cancel.addEventListener('click', close);
    setTimeout(() => cancel.focus(), 0);
  });
}

/** Debounce. */
export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A labelled `<select>`; `options` are [value, text] pairs. */
export function select(labelText, value, options, onchange, testid) {
  const id = `f-${Math.random().toString(36).slice(2, 9)}`;
  const sel = h(
    'select',
    { id, 'data-testid': testid, onchange: (e) => onchange(e.target.value) },
    options.map(([v, txt]) => h('option', { value: v, selected: v === value }, txt)),
  );
  return h('div', { class: 'field' }, h('label', { for: id }, labelText), sel);
}

/** An image that shows a placeholder when the server has none (404) or it fails to load. */
export function picture(src, alt, { cls = 'pic', testid } = {}) {
  // The placeholder sits under the picture: "loading" until it arrives, "no picture" if none comes
  // (the server may wait a few seconds for a camera's first frame).
  const ph = h('div', { class: 'pic-placeholder', 'data-testid': testid ? `${testid}-placeholder` : null }, t('loading'));
  const img = h('img', { src, alt, loading: 'lazy', decoding: 'async', 'data-testid': testid });
  img.addEventListener('error', () => {
    img.classList.remove('loaded');
    ph.textContent = t('no_picture');
  });
  img.addEventListener('load', () => img.classList.add('loaded'));
  return h('div', { class: ['pic', cls] }, ph, img);
}
