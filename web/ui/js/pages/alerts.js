// 告警 Alert feed: the stored alerts, then live ones over the feed; filters; lifecycle actions.

import { get, post, qs, errorText } from '../api.js';
import { h, fill, select, toast } from '../dom.js';
import { t, typeName, label, ALERT_TYPES, SEVERITIES, ALERT_STATES } from '../i18n.js';
import { onFeed } from '../feed.js';
import { alertRow, openAlertDetail, transition, isClosed } from '../alert_common.js';
import { areaOptions, inArea } from '../areas.js';

const HANDLE = ['acknowledged', 'dispatched', 'resolved', 'false_alarm'];
const MAX_ROWS = 300;
const FILTER_KEY = 'qly.alertFilters';
const SEV_RANK = Object.fromEntries(SEVERITIES.map((s, i) => [s, i]));

function loadFilters() {
  try {
    return { area: '', type: '', severity: '', state: '', group: '1', ...JSON.parse(sessionStorage.getItem(FILTER_KEY) || '{}') };
  } catch {
    return { area: '', type: '', severity: '', state: '', group: '1' };
  }
}

export function mount(root, { arg, perms }) {
  // Engineers see the feed (video faults) without the operator's buttons.
  const ACTIONS = perms && !perms.has('handle_alerts') ? [] : HANDLE;
  const filters = loadFilters();
  const alerts = new Map(); // id → alert, newest first by insertion order of `order`
  let order = []; // ids, newest first
  const rows = new Map(); // id → element
  const live = new Set();
  // Incidents (alerts of one camera and rule close together): their cards from the feed; the list
  // shows each incident's newest alert with its count, the rest fold under it.
  const cards = new Map(); // incident id → card
  let cameras = [];
  let alive = true;

  const list = h('div', { class: 'alert-list', 'data-testid': 'alert-list', 'aria-live': 'polite', 'aria-busy': 'true' });
  const count = h('span', { class: 'count', 'data-testid': 'alert-open-count' });
  const banner = h('div', { class: 'banner banner-error', role: 'alert', hidden: true, 'data-testid': 'alert-error' });
  const filterBar = h('div', { class: 'toolbar', role: 'search' });

  const passes = (a) =>
    inArea(a.area_path, filters.area) &&
    (!filters.type || a.alert_type === filters.type) &&
    (!filters.severity || SEV_RANK[a.severity] >= SEV_RANK[filters.severity]) &&
    (!filters.state || a.state === filters.state);

  const paintCount = () => {
    const open = order.filter((id) => alerts.get(id)?.state === 'new').length;
    count.textContent = t('unhandled', open);
  };

  const open = (a) => openAlertDetail(a, { actions: ACTIONS, onChanged: update });

  const act = async (a, to, note, btn) => {
    if (btn) btn.disabled = true;
    try {
      update(await transition(a, to, note));
    } catch (e) {
      if (e.fresh) update(e.fresh);
      else if (btn) btn.disabled = false;
    }
  };

  const members = (incident) => order.map((id) => alerts.get(id)).filter((x) => x && x.incident_id === incident);

  const ackAll = async (a, btn) => {
    btn.disabled = true;
    try {
      const r = await post(`/api/incidents/${encodeURIComponent(a.incident_id)}/transition`, { to: 'acknowledged', note: '' });
      if (r.incident) cards.set(r.incident.id, r.incident);
      for (const id of r.changed || []) {
        const m = alerts.get(id);
        if (m) {
          const next = { ...m, state: 'acknowledged' };
          delete next.next_states;
          alerts.set(id, next);
        }
      }
      toast(t('incident_acked', a.camera_name || a.camera, (r.changed || []).length), 'ok', 3000);
      renderAll();
    } catch (e) {
      toast(errorText(e), 'error');
      btn.disabled = false;
    }
  };

  const rowFor = (a) => {
    const row = alertRow(a, { actions: ACTIONS, onOpen: open, onAct: act, live: live.has(a.id) });
    if (!a.incident_id) return row;
    const mine = members(a.incident_id);
    const n = Math.max(cards.get(a.incident_id)?.count || 0, mine.length);
    if (n < 2) return row;
    row.dataset.incident = a.incident_id;
    row.querySelector('.alert-head')?.append(
      h('span', { class: 'chip chip-incident', 'data-testid': 'alert-incident-count', title: a.incident_id }, t('incident_count', n)));
    const waiting = mine.filter((x) => x.state === 'new').length;
    // One row per incident: its row acknowledges the whole flood (every alert has its own buttons otherwise).
    if (filters.group !== '0' && ACTIONS.includes('acknowledged') && waiting > 0) {
      row.append(h('button', {
        class: 'btn', type: 'button', 'data-testid': 'incident-ack-all',
        onclick: (e) => {
          e.stopPropagation();
          ackAll(a, e.currentTarget);
        },
      }, t('incident_ack_all', waiting)));
    }
    return row;
  };

  /** The newest alert of each incident stands for it; alerts without one stand alone. */
  const leads = (a) => {
    if (!a.incident_id || filters.group === '0') return true;
    return order.find((id) => alerts.get(id)?.incident_id === a.incident_id) === a.id;
  };

  const renderAll = () => {
    rows.clear();
    const shown = order.map((id) => alerts.get(id)).filter((a) => a && passes(a) && leads(a));
    fill(list, shown.length ? shown.map((a) => {
      const el = rowFor(a);
      rows.set(a.id, el);
      return el;
    }) : h('p', { class: 'empty', 'data-testid': 'alert-empty' }, t('alerts_empty')));
    paintCount();
  };

  /** Applies a new or changed alert (from the API or the feed). */
  function update(a, isLive = false) {
    const known = alerts.get(a.id);
    const merged = known ? { ...known, ...a } : { ...a };
    // An update without `next_states` after a state change: the old list no longer applies.
    if (known && a.state !== known.state && !('next_states' in a)) delete merged.next_states;
    alerts.set(a.id, merged);
    if (!known) {
      order.unshift(a.id);
      order.sort((x, y) => (x < y ? 1 : x > y ? -1 : 0));
      if (isLive) live.add(a.id);
      for (const id of order.splice(MAX_ROWS)) {
        alerts.delete(id);
        rows.get(id)?.remove();
        rows.delete(id);
      }
    }
    if (merged.incident_id) {
      // Part of an incident: its row and count change together; repaint the list.
      renderAll();
      return;
    }
    const old = rows.get(a.id);
    if (!passes(merged)) {
      if (old) {
        old.remove();
        rows.delete(a.id);
      }
    } else if (old) {
      const el = rowFor(merged);
      el.classList.remove('flash');
      old.replaceWith(el);
      rows.set(a.id, el);
    } else {
      const el = rowFor(merged);
      list.querySelector('.empty')?.remove();
      // Keep newest first: before the first shown row with a smaller id.
      const idx = order.indexOf(a.id);
      const next = order.slice(idx + 1).find((id) => rows.has(id));
      if (next) list.insertBefore(el, rows.get(next));
      else list.append(el);
      rows.set(a.id, el);
    }
    paintCount();
  }

  const load = async () => {
    list.setAttribute('aria-busy', 'true');
    banner.hidden = true;
    try {
      const data = await get(`/api/alerts${qs({
        limit: MAX_ROWS, type: filters.type, severity: filters.severity, state: filters.state,
        // An area path (`示范县/城关镇`): that area and below.
        area: filters.area,
      })}`);
      if (!alive) return;
      for (const a of data) {
        if (!alerts.has(a.id)) order.push(a.id);
        alerts.set(a.id, { ...alerts.get(a.id), ...a });
      }
      order.sort((x, y) => (x < y ? 1 : x > y ? -1 : 0));
      order = order.slice(0, MAX_ROWS);
      renderAll();
    } catch (e) {
      banner.textContent = errorText(e);
      banner.hidden = false;
    } finally {
      list.setAttribute('aria-busy', 'false');
    }
  };

  const setFilter = (k, v) => {
    filters[k] = v;
    try {
      sessionStorage.setItem(FILTER_KEY, JSON.stringify(filters));
    } catch {
      /* not remembered */
    }
    renderAll();
    load();
  };

  const drawFilters = () => {
    fill(filterBar,
      select(t('area'), filters.area, areaOptions(cameras), (v) => setFilter('area', v), 'filter-area'),
      select(t('type'), filters.type, [['', t('all')], ...ALERT_TYPES.map((x) => [x, typeName(x)])], (v) => setFilter('type', v), 'filter-type'),
      select(t('min_severity'), filters.severity, [['', t('all')], ...SEVERITIES.map((x) => [x, label('sev_', x)])], (v) => setFilter('severity', v), 'filter-severity'),
      select(t('state'), filters.state, [['', t('all')], ...ALERT_STATES.map((x) => [x, label('st_', x)])], (v) => setFilter('state', v), 'filter-state'),
      select(t('grouping'), filters.group, [['1', t('group_incidents')], ['0', t('all_alerts')]], (v) => setFilter('group', v), 'filter-group'),
      h('button', { class: 'btn', type: 'button', 'data-testid': 'alerts-refresh', onclick: load }, t('refresh')));
  };

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, t('alerts_title')), count),
    filterBar, banner, list);
  drawFilters();

  const off = onFeed((msg) => {
    if (msg.kind === 'alert') update(msg, true);
    else if (msg.kind === 'alert_update' && alerts.has(msg.id)) update(msg);
    else if (msg.kind === 'incident') {
      cards.set(msg.id, msg);
      if (order.some((id) => alerts.get(id)?.incident_id === msg.id)) renderAll();
    }
  });

  get('/api/cameras').then((c) => {
    if (!alive) return;
    cameras = c;
    drawFilters();
  }).catch((e) => toast(errorText(e), 'error'));
  load();
  if (arg) open(arg);

  // Relative times ("5 分钟前") age: repaint the open rows every 30 s.
  const timer = setInterval(() => {
    for (const [id, el] of rows) {
      const a = alerts.get(id);
      if (a && !isClosed(a)) {
        const fresh = rowFor(a);
        fresh.classList.remove('flash');
        if (el.contains(document.activeElement)) continue;
        el.replaceWith(fresh);
        rows.set(id, fresh);
      }
    }
  }, 30000);

  return () => {
    alive = false;
    off();
    clearInterval(timer);
  };
}
