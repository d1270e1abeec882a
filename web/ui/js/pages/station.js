// 派出所 Police-station view: the dispatched alerts of this station's jurisdiction (the API filters by the
// user's area), with 接警 accept / 到场 arrived / 办结 close.

import { get, errorText } from '../api.js';
import { h, fill } from '../dom.js';
import { t } from '../i18n.js';
import { onFeed } from '../feed.js';
import { beep } from '../sound.js';
import { alertRow, openAlertDetail, transition, isClosed } from '../alert_common.js';
import { inArea } from '../areas.js';

const POLICE = ['accepted', 'arrived', 'resolved'];
const ACTIVE = ['dispatched', 'accepted', 'arrived'];
const SHOWN = [...ACTIVE, 'resolved'];

export function mount(root, { user, perms }) {
  const ACTIONS = perms && !perms.has('police_actions') ? [] : POLICE;
  const alerts = new Map();
  let alive = true;
  const active = h('div', { class: 'alert-list', 'data-testid': 'station-active', 'aria-live': 'polite' });
  const done = h('div', { class: 'alert-list', 'data-testid': 'station-done' });
  const banner = h('div', { class: 'banner banner-error', role: 'alert', hidden: true, 'data-testid': 'station-error' });

  // The server already limits a dispatcher to its area; this keeps the view right if it sends more.
  const mine = (a) => !user.area || inArea(a.area_path, user.area) || a.jurisdiction === user.area;

  const open = (a) => openAlertDetail(a, { actions: ACTIONS, onChanged: put });
  const act = async (a, to, note, btn) => {
    if (btn) btn.disabled = true;
    try {
      put(await transition(a, to, note));
    } catch (e) {
      if (e.fresh) put(e.fresh);
      else if (btn) btn.disabled = false;
    }
  };

  const paint = () => {
    const list = [...alerts.values()].filter((a) => SHOWN.includes(a.state) && mine(a)).sort((x, y) => (x.id < y.id ? 1 : -1));
    const row = (a) => alertRow(a, { actions: ACTIONS, onOpen: open, onAct: act, live: a._live });
    const act1 = list.filter((a) => ACTIVE.includes(a.state));
    const done1 = list.filter((a) => isClosed(a)).slice(0, 50);
    fill(active, act1.length ? act1.map(row) : h('p', { class: 'empty', 'data-testid': 'station-empty' }, t('station_empty')));
    fill(done, done1.length ? done1.map(row) : h('p', { class: 'empty' }, t('none')));
  };

  function put(a, live = false) {
    const old = alerts.get(a.id);
    const merged = { ...(old || {}), ...a };
    if (old && a.state !== old.state && !('next_states' in a)) delete merged.next_states;
    if (live && (!old || old.state !== merged.state) && merged.state === 'dispatched') {
      merged._live = true;
      if (mine(merged)) beep(merged.severity === 'critical' ? 'critical' : 'high');
    }
    alerts.set(a.id, merged);
    paint();
  }

  const load = async () => {
    try {
      const lists = await Promise.all(SHOWN.map((st) => get(`/api/alerts?state=${st}&limit=200`).catch((e) => {
        // A state the server does not know yet (accepted / arrived) is not an error of this view.
        if (e.status === 422) return [];
        throw e;
      })));
      if (!alive) return;
      for (const a of lists.flat()) alerts.set(a.id, { ...(alerts.get(a.id) || {}), ...a });
      banner.hidden = true;
      paint();
    } catch (e) {
      banner.textContent = errorText(e);
      banner.hidden = false;
    }
  };

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, t('station_title')),
      h('span', { class: 'muted', 'data-testid': 'station-area' }, t('station_area', user.area || t('all')))),
    banner,
    h('section', { 'aria-labelledby': 'st-active' }, h('h2', { id: 'st-active' }, t('station_active')), active),
    h('section', { 'aria-labelledby': 'st-done' }, h('h2', { id: 'st-done' }, t('station_done')), done));

  const off = onFeed(async (msg) => {
    if (msg.kind === 'alert') {
      if (SHOWN.includes(msg.state)) put(msg, true);
      else alerts.set(msg.id, msg);
    } else if (msg.kind === 'alert_update') {
      if (alerts.has(msg.id)) {
        put(msg, true);
      } else if (SHOWN.includes(msg.state)) {
        // Updates carry no area: fetch the alert; the server answers only for our jurisdiction.
        try {
          const a = await get(`/api/alerts/${encodeURIComponent(msg.id)}`);
          if (alive && mine(a)) put(a, true);
        } catch {
          /* not ours (403/404) */
        }
      }
    }
  });
  load();
  const timer = setInterval(load, 15000);
  return () => {
    alive = false;
    off();
    clearInterval(timer);
  };
}
