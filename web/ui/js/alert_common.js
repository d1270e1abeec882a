// What the alert feed and the police-station view share: rows, the detail dialog, lifecycle actions.

import { ApiError, get, post, errorText } from './api.js';
import { h, fill, fmtTime, fmtAgo, fmtArea, picture, openDialog, toast } from './dom.js';
import { t, getLang, typeName, label } from './i18n.js';

/** The lifecycle as the server enforces it (src/store/lifecycle.rs), used when an answer has no `next_states`. */
const NEXT = {
  new: ['acknowledged', 'dispatched', 'false_alarm'],
  acknowledged: ['dispatched', 'resolved', 'false_alarm'],
  dispatched: ['accepted', 'arrived', 'resolved', 'false_alarm'],
  accepted: ['arrived', 'resolved', 'false_alarm'],
  arrived: ['resolved', 'false_alarm'],
  resolved: [],
  false_alarm: [],
};

/** Learned from a 409 (`… the allowed next states are: a, b`): overrides the table for that alert. */
const learned = new Map();

/** The states this alert may move to next. */
export function nextStates(alert) {
  if (Array.isArray(alert.next_states)) return alert.next_states;
  const key = `${alert.id}:${alert.state}`;
  if (learned.has(key)) return learned.get(key);
  return NEXT[alert.state] || [];
}

/** True when the alert is finished (resolved or false alarm). */
export function isClosed(alert) {
  return alert.state === 'resolved' || alert.state === 'false_alarm';
}

function parseAllowed(message) {
  const m = /allowed next states are:\s*([^)]*)/.exec(message || '');
  if (!m) return null;
  const list = m[1].split(',').map((x) => x.trim()).filter((x) => x && x !== 'none');
  return list;
}

/** POSTs a transition; returns the updated alert, or throws after showing the error. */
export async function transition(alert, to, note) {
  try {
    const updated = await post(`/api/alerts/${encodeURIComponent(alert.id)}/transition`, { to, note: note || '' });
    toast(t('transition_done', updated.camera_name || updated.camera || '', label('st_', to)), 'ok', 3000);
    return updated;
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      const allowed = Array.isArray(e.body && e.body.next_states) ? e.body.next_states : parseAllowed(e.message);
      if (allowed) {
        learned.set(`${alert.id}:${alert.state}`, allowed);
        toast(`${e.message} — ${t('err_conflict_states', allowed.map((s) => label('st_', s)).join('、') || t('none'))}`, 'error');
      } else {
        toast(errorText(e), 'error');
      }
      // The alert moved on elsewhere: fetch what it is now.
      try {
        const fresh = await get(`/api/alerts/${encodeURIComponent(alert.id)}`);
        e.fresh = fresh;
      } catch {
        /* keep the old view */
      }
    } else {
      toast(errorText(e), 'error');
    }
    throw e;
  }
}

/** A severity chip. */
export function sevChip(sev) {
  return h('span', { class: ['chip', `sev-${sev}`], 'data-testid': 'alert-severity', 'data-severity': sev }, label('sev_', sev));
}

/** A lifecycle-state chip. */
export function stateChip(state) {
  return h('span', { class: ['chip', `st-${state}`], 'data-testid': 'alert-state', 'data-state': state }, label('st_', state));
}

/** Action buttons for the allowed next states among `actions` (the page's set). */
export function actionButtons(alert, actions, onAct, { big = false } = {}) {
  const allowed = nextStates(alert).filter((s) => actions.includes(s));
  return h('div', { class: 'actions', role: 'group', 'aria-label': t('state') },
    allowed.map((to) => h('button', {
      type: 'button',
      class: ['btn', big && 'btn-lg', to === 'false_alarm' ? 'btn-quiet' : to === 'dispatched' || to === 'accepted' ? 'btn-danger' : 'btn-primary'],
      'data-testid': `act-${to}`,
      'data-to': to,
      onclick: (e) => {
        e.stopPropagation();
        onAct(to, e.currentTarget);
      },
    }, t(`act_${to}`))));
}

function snapshotUrl(alert) {
  return `/api/alerts/${encodeURIComponent(alert.id)}/snapshot.jpg`;
}

/** One alert as a row of the feed. */
export function alertRow(alert, { actions, onOpen, onAct, live = false }) {
  const msg = getLang() === 'en' ? alert.message_en : alert.message_zh;
  const row = h('article', {
    class: ['alert-row', `sev-border-${alert.severity}`, live && (alert.severity === 'high' || alert.severity === 'critical') && 'flash', isClosed(alert) && 'closed'],
    'data-testid': 'alert-row', 'data-id': alert.id, 'data-state': alert.state, 'data-severity': alert.severity,
    'data-type': alert.alert_type, 'data-camera': alert.camera, 'data-live': live ? '1' : null,
    tabindex: '0', 'aria-label': `${typeName(alert.alert_type)} ${alert.camera_name} ${fmtTime(alert.time_ms)}`,
    onclick: () => onOpen(alert),
    onkeydown: (e) => {
      if ((e.key === 'Enter' || e.key === ' ') && e.target === row) {
        e.preventDefault();
        onOpen(alert);
      }
    },
  },
  picture(snapshotUrl(alert), t('snapshot'), { cls: 'alert-thumb', testid: 'alert-thumb' }),
  h('div', { class: 'alert-main' },
    h('div', { class: 'alert-head' },
      h('span', { class: 'alert-type', 'data-testid': 'alert-type' }, typeName(alert.alert_type)),
      alert.code && h('span', { class: 'code', title: 'GA/T 2000.254' }, alert.code),
      sevChip(alert.severity),
      stateChip(alert.state),
      alert.escalated && h('span', { class: 'chip chip-warn' }, t('escalated'))),
    h('div', { class: 'alert-msg' }, msg),
    h('div', { class: 'alert-place' },
      h('span', { class: 'cam-name', 'data-testid': 'alert-camera' }, alert.camera_name || alert.camera),
      h('span', { class: 'area', 'data-testid': 'alert-area' }, fmtArea(alert.area_path))),
    h('div', { class: 'alert-time' },
      h('time', { datetime: new Date(alert.time_ms).toISOString() }, fmtTime(alert.time_ms)),
      h('span', { class: 'muted' }, ` · ${fmtAgo(alert.time_ms)}`))),
  actionButtons(alert, actions, (to, btn) => onAct(alert, to, '', btn)));
  return row;
}

function eventRow(ev) {
  const kind = { created: 'ev_created', transition: 'ev_transition', escalated: 'ev_escalated', case: 'ev_case' }[ev.kind];
  return h('li', { class: 'event', 'data-testid': 'alert-event', 'data-to': ev.to || '' },
    h('time', {}, fmtTime(ev.at_ms)),
    h('span', { class: 'event-kind' }, kind ? t(kind) : ev.kind),
    ev.from || ev.to ? h('span', { class: 'event-states' }, ev.from ? label('st_', ev.from) : '', ev.from && ev.to ? ' → ' : '', ev.to ? label('st_', ev.to) : '') : null,
    h('span', { class: 'event-who' }, ev.who),
    ev.note && h('span', { class: 'event-note' }, ev.note));
}

function info(rows) {
  return h('dl', { class: 'info' }, rows.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** The alert's evidence clip: a player once written, otherwise what became of it. */
function clipView(alert) {
  const c = alert.clip;
  if (!c) return null;
  if (c.state === 'ready') {
    return h('video', {
      class: 'clip', controls: true, preload: 'metadata', 'data-testid': 'alert-clip',
      src: `/api/alerts/${encodeURIComponent(alert.id)}/clip.mp4`, title: t('clip'),
    });
  }
  const text = c.state === 'recording' ? t('clip_recording')
    : c.state === 'failed' ? t('clip_failed', c.error || '')
      : t('clip_deleted');
  return h('p', { class: 'clip-state', 'data-testid': 'alert-clip-state' }, `${t('clip')}: ${text}`);
}

/** The alert's detail dialog: annotated snapshot, facts, lifecycle history, actions with a note. */
export async function openAlertDetail(alertOrId, { actions, onChanged }) {
  const id = typeof alertOrId === 'string' ? alertOrId : alertOrId.id;
  const body = h('div', { class: 'alert-detail' }, h('p', {}, t('loading')));
  const { close } = openDialog(t('alert_detail'), body, { testid: 'alert-detail', wide: true });
  let alert;
  let incident = null;
  const load = async () => {
    try {
      alert = await get(`/api/alerts/${encodeURIComponent(id)}`);
    } catch (e) {
      fill(body, h('p', { class: 'banner banner-error', role: 'alert' }, errorText(e)));
      return;
    }
    // The incident it folded into (its count and span); the alert shows without it if that fails.
    incident = null;
    if (alert.incident_id) {
      try {
        incident = await get(`/api/incidents/${encodeURIComponent(alert.incident_id)}`);
      } catch {
        /* shown by id only */
      }
    }
    draw();
  };
  const draw = () => {
    const note = h('textarea', { id: 'alert-note', rows: 2, maxlength: 1024, placeholder: t('note_ph'), 'data-testid': 'alert-note' });
    const msg = getLang() === 'en' ? alert.message_en : alert.message_zh;
    const loc = alert.lat !== null && alert.lat !== undefined ? `${alert.lat.toFixed(5)}, ${alert.lon.toFixed(5)}` : '';
    fill(body,
      h('div', { class: 'detail-grid' },
        h('figure', { class: 'detail-snap' },
          picture(`/api/alerts/${encodeURIComponent(alert.id)}/snapshot.jpg`, t('snapshot'), { cls: 'snap-large', testid: 'alert-snapshot' }),
          h('figcaption', {}, msg),
          clipView(alert)),
        h('div', { class: 'detail-side' },
          h('div', { class: 'alert-head' },
            h('span', { class: 'alert-type big' }, typeName(alert.alert_type)), sevChip(alert.severity), stateChip(alert.state)),
          info([
            [t('camera'), `${alert.camera_name} (${alert.camera})`],
            [t('place'), fmtArea(alert.area_path)],
            [t('jurisdiction'), alert.jurisdiction],
            [t('time'), fmtTime(alert.time_ms)],
            [t('score'), typeof alert.score === 'number' ? alert.score.toFixed(2) : ''],
            [t('rule'), alert.rule_id],
            [t('tracks'), (alert.track_ids || []).map((x) => `#${x}`).join(' ')],
            [t('location'), loc],
            [t('case_id'), alert.case_id],
            [t('incident'), alert.incident_id && h('span', { 'data-testid': 'alert-incident' },
              incident ? `${t('incident_count', incident.count)} · ${fmtTime(incident.first_ms)} – ${fmtTime(incident.last_ms)}` : alert.incident_id)],
            ['ID', h('code', { 'data-testid': 'alert-id' }, alert.id)],
          ]),
          nextStates(alert).some((s) => actions.includes(s)) && h('div', { class: 'field' }, h('label', { for: 'alert-note' }, t('note')), note),
          actionButtons(alert, actions, async (to, btn) => {
            btn.disabled = true;
            try {
              alert = { ...(await transition(alert, to, note.value)), events: alert.events };
              if (onChanged) onChanged(alert);
              await load();
            } catch (e) {
              if (e.fresh) {
                alert = e.fresh;
                if (onChanged) onChanged(alert);
                draw();
              } else {
                btn.disabled = false;
              }
            }
          }, { big: true }))),
      h('h3', {}, t('history')),
      h('ol', { class: 'events', 'data-testid': 'alert-events' }, (alert.events || []).map(eventRow)));
    // A clip still recording is written `post` seconds after the alert: look again while open.
    if (alert.clip && alert.clip.state === 'recording') {
      setTimeout(() => { if (body.isConnected) load(); }, 3000);
    }
  };
  await load();
  return { close };
}
