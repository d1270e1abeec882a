// 审计 Audit log (administrators): who changed what and when, newest first. The server filters by user
// and time range and answers at most `limit` rows; "older" asks for the page before the oldest row
// shown. The action filter works on the rows loaded (the API has no action parameter).

import { get, qs, errorText } from '../api.js';
import { h, fill, fmtTime, debounce } from '../dom.js';
import { t, label } from '../i18n.js';

/** The actions the service records (route patterns, see src/auth/guard.rs) → their i18n key. */
const ACTIONS = {
  login: 'aud_login',
  login_failed: 'aud_login_failed',
  'POST /api/auth/logout': 'aud_logout',
  'POST /api/users': 'aud_user_create',
  'PUT /api/users/{username}': 'aud_user_update',
  'DELETE /api/users/{username}': 'aud_user_delete',
  'POST /api/users/{username}/tokens': 'aud_token_create',
  'DELETE /api/users/{username}/tokens/{id}': 'aud_token_revoke',
  'POST /api/cameras': 'aud_camera_create',
  'POST /api/cameras/import': 'aud_camera_import',
  'PUT /api/cameras/{id}': 'aud_camera_update',
  'DELETE /api/cameras/{id}': 'aud_camera_delete',
  'PUT /api/rules': 'aud_rules_save',
  'POST /api/alerts/{id}/transition': 'aud_alert_transition',
  'POST /api/delivery/{id}/retry': 'aud_delivery_retry',
};

const PERIODS = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };
const LIMITS = [50, 100, 200, 500, 1000];
const CST_MS = 8 * 3600e3;

/** The action in words (the raw action stays visible next to it). */
export function actionName(action) {
  return ACTIONS[action] ? t(ACTIONS[action]) : action;
}

/** `2024-06-01T08:30` from a `datetime-local` input, read as China Standard Time → unix ms. */
function cstInput(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(value || '');
  if (!m) return null;
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]) - CST_MS;
}

function fmtValue(v) {
  if (v === null || v === undefined) return '—';
  if (Array.isArray(v)) return v.map(fmtValue).join(', ');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function detailCell(d) {
  if (d === null || d === undefined) return '';
  if (typeof d !== 'object' || Array.isArray(d)) return h('code', {}, fmtValue(d));
  return h('span', { class: 'kv' }, Object.entries(d).map(([k, v]) =>
    h('span', { class: 'kv-item' }, h('span', { class: 'kv-key' }, `${k}:`), ' ', h('code', {}, fmtValue(v)))));
}

export function mount(root, { arg, perms }) {
  let alive = true;
  let rows = [];
  let more = false;
  let seq = 0;
  const filters = { username: arg || '', period: '', from: '', to: '', action: '', limit: 100 };
  const banner = h('div', { class: 'banner banner-error', role: 'alert', hidden: true, 'data-testid': 'audit-error' });
  const body = h('section', { class: 'panel', 'data-testid': 'audit-list', 'aria-live': 'polite' }, h('p', { class: 'empty' }, t('loading')));
  const foot = h('div', { class: 'toolbar audit-foot' });
  const users = h('datalist', { id: 'audit-users' });

  /** since/until of the chosen time range (until exclusive), or nulls. */
  const range = () => {
    if (filters.period === 'custom') return { since: cstInput(filters.from), until: cstInput(filters.to) };
    if (PERIODS[filters.period]) return { since: Date.now() - PERIODS[filters.period], until: null };
    return { since: null, until: null };
  };

  const fetchPage = (until) => {
    const r = range();
    const u = until !== null && until !== undefined && r.until !== null ? Math.min(until, r.until) : (until ?? r.until);
    return get(`/api/audit${qs({ username: filters.username, since: r.since, until: u, limit: filters.limit })}`);
  };

  const load = async () => {
    const mine = ++seq;
    try {
      const got = await fetchPage(null);
      if (!alive || mine !== seq) return;
      rows = Array.isArray(got) ? got : [];
      more = rows.length >= filters.limit;
      banner.hidden = true;
      paint();
    } catch (e) {
      if (!alive || mine !== seq) return;
      banner.textContent = errorText(e);
      banner.hidden = false;
      rows = [];
      more = false;
      paint();
    }
  };

  const loadOlder = async (btn) => {
    if (!rows.length) return;
    btn.disabled = true;
    const mine = seq;
    try {
      // `until` is exclusive: ask up to the oldest row's millisecond inclusive and drop what we have.
      const oldest = rows[rows.length - 1].at_ms;
      const got = await fetchPage(oldest + 1);
      if (!alive || mine !== seq) return;
      const seen = new Set(rows.map((r) => r.id));
      const fresh = (Array.isArray(got) ? got : []).filter((r) => !seen.has(r.id));
      rows = rows.concat(fresh).sort((a, b) => b.id - a.id);
      more = fresh.length > 0 && got.length >= filters.limit;
      paint();
    } catch (e) {
      banner.textContent = errorText(e);
      banner.hidden = false;
      btn.disabled = false;
    }
  };

  const actionSel = h('select', {
    id: 'audit-action', 'data-testid': 'audit-action', title: t('audit_action_hint'),
    onchange: (e) => { filters.action = e.target.value; paint(); },
  });

  const paintActions = () => {
    const present = new Set(rows.map((r) => r.action));
    if (filters.action) present.add(filters.action);
    const opts = [...present].sort((a, b) => actionName(a).localeCompare(actionName(b), 'zh-CN'));
    fill(actionSel, h('option', { value: '' }, t('all')),
      opts.map((a) => h('option', { value: a, selected: a === filters.action }, actionName(a))));
  };

  function paint() {
    paintActions();
    const shown = filters.action ? rows.filter((r) => r.action === filters.action) : rows;
    if (!shown.length) {
      fill(body, h('p', { class: 'empty', 'data-testid': 'audit-empty' }, t('audit_empty')));
    } else {
      const cols = [t('time'), t('audit_user'), t('audit_action'), t('audit_target'), t('audit_detail'), t('audit_remote')];
      fill(body, h('table', { class: 'table audit-table', 'data-testid': 'audit-table' },
        h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, shown.map((r) => h('tr', {
          'data-testid': 'audit-row', 'data-id': r.id, 'data-action': r.action, 'data-user': r.username,
          class: r.action === 'login_failed' && 'audit-failed',
        },
        h('td', { class: 'num', 'data-testid': 'audit-time' }, fmtTime(r.at_ms)),
        h('td', { 'data-testid': 'audit-user' },
          h('button', {
            class: 'link', type: 'button', title: t('audit_only_user', r.username),
            onclick: () => { filters.username = r.username; userInput.value = r.username; load(); },
          }, r.username),
          r.role && h('span', { class: 'muted small who-role' }, ` ${label('role_', r.role)}`)),
        h('td', { 'data-testid': 'audit-action-cell' }, h('div', {}, actionName(r.action)),
          ACTIONS[r.action] && h('code', { class: 'muted small action-code' }, r.action)),
        h('td', { 'data-testid': 'audit-target' }, h('code', { class: 'url' }, r.target)),
        h('td', { 'data-testid': 'audit-detail' }, detailCell(r.detail)),
        h('td', { class: 'muted small' }, r.remote || ''))))));
    }
    const btn = h('button', { class: 'btn', type: 'button', 'data-testid': 'audit-more', onclick: (e) => loadOlder(e.currentTarget) }, t('audit_older'));
    fill(foot,
      h('span', { class: 'muted', 'data-testid': 'audit-count' }, filters.action ? t('audit_count_filtered', shown.length, rows.length) : t('audit_count', rows.length)),
      more ? btn : rows.length ? h('span', { class: 'muted' }, t('audit_end')) : null);
  }

  const userInput = h('input', {
    id: 'audit-user', type: 'search', list: 'audit-users', value: filters.username, autocomplete: 'off', 'data-testid': 'audit-user-filter',
    placeholder: t('audit_user_ph'),
  });
  const reloadSoon = debounce(load, 400);
  userInput.addEventListener('input', () => {
    filters.username = userInput.value.trim();
    reloadSoon();
  });
  const from = h('input', { id: 'audit-from', type: 'datetime-local', 'data-testid': 'audit-from', onchange: (e) => { filters.from = e.target.value; load(); } });
  const to = h('input', { id: 'audit-to', type: 'datetime-local', 'data-testid': 'audit-to', onchange: (e) => { filters.to = e.target.value; load(); } });
  const custom = h('div', { class: 'toolbar audit-custom', hidden: true },
    h('div', { class: 'field' }, h('label', { for: 'audit-from' }, t('audit_from')), from),
    h('div', { class: 'field' }, h('label', { for: 'audit-to' }, t('audit_to')), to));
  const period = h('select', {
    id: 'audit-period', 'data-testid': 'audit-period',
    onchange: (e) => { filters.period = e.target.value; custom.hidden = filters.period !== 'custom'; load(); },
  }, [['', t('audit_all_time')], ['1h', t('p_1h')], ['24h', t('p_24h')], ['7d', t('p_7d')], ['30d', t('p_30d')], ['custom', t('audit_custom')]]
    .map(([v, txt]) => h('option', { value: v }, txt)));
  const limit = h('select', {
    id: 'audit-limit', 'data-testid': 'audit-limit',
    onchange: (e) => { filters.limit = Number(e.target.value); load(); },
  }, LIMITS.map((n) => h('option', { value: String(n), selected: n === filters.limit }, t('audit_per_page', n))));

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, t('audit_title')),
      h('span', { class: 'muted small' }, t('audit_sub')),
      h('button', { class: 'btn', type: 'button', 'data-testid': 'audit-refresh', onclick: load }, t('refresh'))),
    banner,
    h('div', { class: 'toolbar', role: 'search' },
      h('div', { class: 'field' }, h('label', { for: 'audit-user' }, t('audit_user')), userInput),
      h('div', { class: 'field' }, h('label', { for: 'audit-period' }, t('audit_period')), period),
      h('div', { class: 'field' }, h('label', { for: 'audit-action' }, t('audit_action')), actionSel),
      h('div', { class: 'field' }, h('label', { for: 'audit-limit' }, t('audit_limit')), limit)),
    custom, body, foot, users);

  load();
  if (perms.has('manage_users')) {
    get('/api/users').then((list) => {
      if (alive && Array.isArray(list)) fill(users, list.map((u) => h('option', { value: u.username }, u.display_name)));
    }).catch(() => { /* suggestions only */ });
  }
  return () => {
    alive = false;
  };
}
