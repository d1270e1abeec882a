// 摄像机 Camera wall: every camera's state, reason, since when and latest picture; click for its history.

import { get, qs, errorText } from '../api.js';
import { h, fill, select, fmtTime, fmtAgo, fmtArea, openDialog, picture, pct } from '../dom.js';
import { t, label, CAMERA_STATES } from '../i18n.js';
import { onFeed } from '../feed.js';
import { areaOptions, inArea } from '../areas.js';

const REFRESH_MS = 5000;
const FRAME_MS = 10000;

/** Why a camera is in its state, in the current language: offline reason or quality faults. */
export function stateReason(c) {
  if (c.state === 'offline' && c.reason) return label('rs_', c.reason);
  if (c.faults && c.faults.length) return c.faults.map((f) => label('qf_', typeof f === 'string' ? f : f.code)).join('、');
  return '';
}

function frameUrl(id) {
  return `/api/cameras/${encodeURIComponent(id)}/frame.jpg?t=${Date.now()}`;
}

function counts(cams) {
  const n = Object.fromEntries(CAMERA_STATES.map((s) => [s, 0]));
  for (const c of cams) n[c.state] = (n[c.state] || 0) + 1;
  return n;
}

export function mount(root) {
  const filters = { area: '', state: '', q: '' };
  let cams = [];
  let alive = true;
  const tiles = new Map(); // id → {el, key}
  const frameFailed = new Map(); // id → time of the last 404
  // Only tiles on screen ask for pictures: each request keeps the server encoding that camera's
  // thumbnail for a minute, which a county of 1,300 cameras cannot afford for tiles nobody sees.
  const visible = new Set();
  const observer = 'IntersectionObserver' in window
    ? new IntersectionObserver((entries) => {
      for (const e of entries) {
        const id = e.target.dataset.id;
        if (e.isIntersecting) visible.add(id);
        else visible.delete(id);
      }
    }, { rootMargin: '200px' })
    : null;

  const grid = h('div', { class: 'camera-grid', 'data-testid': 'camera-grid' });
  const banner = h('div', { class: 'banner banner-error', role: 'alert', hidden: true, 'data-testid': 'camera-error' });
  const summary = h('div', { class: 'state-summary', 'data-testid': 'camera-summary' });
  const bar = h('div', { class: 'toolbar', role: 'search' });

  const passes = (c) =>
    inArea(c.area_path, filters.area) &&
    (!filters.state || c.state === filters.state) &&
    (!filters.q || `${c.id} ${c.name} ${c.area_path || ''} ${(c.tags || []).join(' ')}`.toLowerCase().includes(filters.q.toLowerCase()));

  const tileKey = (c) => JSON.stringify([c.state, c.reason, (c.faults || []).map((f) => f.code || f), c.since_ms, c.name, c.area_path]);

  const tile = (c) => {
    const reason = stateReason(c);
    const el = h('article', {
      role: 'button', tabindex: '0', class: ['camera-tile', `cs-${c.state}`], 'data-testid': 'camera-tile', 'data-id': c.id, 'data-state': c.state,
      'aria-label': `${c.name} ${label('cs_', c.state)} ${reason}`,
      onclick: () => openHistory(c.id),
      onkeydown: (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          openHistory(c.id);
        }
      },
    },
    picture(frameUrl(c.id), c.name, { cls: 'tile-pic', testid: 'camera-frame' }),
    h('div', { class: 'tile-state' },
      h('span', { class: 'dot', 'aria-hidden': 'true' }),
      h('span', { class: 'state-label', 'data-testid': 'camera-state' }, label('cs_', c.state)),
      reason && h('span', { class: 'reason', 'data-testid': 'camera-reason' }, reason)),
    h('div', { class: 'tile-name' }, c.name),
    h('div', { class: 'tile-meta' },
      h('span', {}, c.id), h('span', {}, fmtArea(c.area_path))),
    h('div', { class: 'tile-since', title: fmtTime(c.since_ms) }, `${t('since')} ${fmtTime(c.since_ms).slice(5, 16)} · ${fmtAgo(c.since_ms)}`));
    return el;
  };

  const paint = () => {
    const shown = cams.filter(passes);
    const n = counts(cams);
    fill(summary, CAMERA_STATES.filter((s) => n[s] || s === 'online' || s === 'offline').map((s) =>
      h('button', {
        type: 'button', class: ['state-count', `cs-${s}`, filters.state === s && 'active'], 'data-testid': `count-${s}`,
        'aria-pressed': String(filters.state === s),
        onclick: () => { filters.state = filters.state === s ? '' : s; drawBar(); paint(); },
      }, h('span', { class: 'dot', 'aria-hidden': 'true' }), `${label('cs_', s)} `, h('b', {}, n[s]))));
    const seen = new Set();
    const els = [];
    for (const c of shown) {
      seen.add(c.id);
      const key = tileKey(c);
      let entry = tiles.get(c.id);
      if (!entry || entry.key !== key) {
        const el = tile(c);
        if (entry) {
          // Keep the picture already shown: no flicker on a state change.
          const oldPic = entry.el.querySelector('.tile-pic');
          if (oldPic) el.querySelector('.tile-pic').replaceWith(oldPic);
        }
        if (entry && observer) observer.unobserve(entry.el);
        if (observer) observer.observe(el);
        entry = { el, key };
        tiles.set(c.id, entry);
      }
      els.push(entry.el);
    }
    for (const [id, entry] of [...tiles]) {
      if (!seen.has(id)) {
        if (observer) observer.unobserve(entry.el);
        tiles.delete(id);
        visible.delete(id);
      }
    }
    if (!els.length) fill(grid, h('p', { class: 'empty' }, t('cam_empty')));
    else {
      // Reorder without recreating: focus and pictures stay.
      if (grid.querySelector('.empty')) grid.replaceChildren();
      els.forEach((el, i) => {
        if (grid.children[i] !== el) grid.insertBefore(el, grid.children[i] || null);
      });
      while (grid.children.length > els.length) grid.lastChild.remove();
    }
  };

  const drawBar = () => {
    const search = h('input', {
      id: 'cam-search', type: 'search', value: filters.q, placeholder: `${t('camera')} / ID`, 'data-testid': 'camera-search',
      oninput: (e) => { filters.q = e.target.value; paint(); },
    });
    fill(bar,
      select(t('area'), filters.area, areaOptions(cams), (v) => { filters.area = v; paint(); }, 'camera-filter-area'),
      select(t('state'), filters.state, [['', t('all')], ...CAMERA_STATES.map((s) => [s, label('cs_', s)])], (v) => { filters.state = v; paint(); }, 'camera-filter-state'),
      h('div', { class: 'field' }, h('label', { for: 'cam-search' }, t('camera')), search));
  };

  const refresh = async () => {
    try {
      const data = await get('/api/cameras');
      if (!alive) return;
      const firstAreas = JSON.stringify(areaOptions(cams));
      cams = data.sort((a, b) => (a.area_path || '').localeCompare(b.area_path || '', 'zh-CN') || a.id.localeCompare(b.id));
      if (JSON.stringify(areaOptions(cams)) !== firstAreas && !bar.contains(document.activeElement)) drawBar();
      banner.hidden = true;
      paint();
    } catch (e) {
      banner.textContent = errorText(e);
      banner.hidden = false;
    }
  };

  // Latest pictures of the cameras that deliver video; a camera without one (404) is asked again later.
  const refreshFrames = () => {
    for (const [id, { el }] of tiles) {
      const c = cams.find((x) => x.id === id);
      if (!c || (c.state !== 'online' && c.state !== 'degraded')) continue;
      if (observer && !visible.has(id)) continue;
      if (frameFailed.has(id) && Date.now() - frameFailed.get(id) < 60000) continue;
      const img = new Image();
      img.onload = () => {
        frameFailed.delete(id);
        const cur = el.querySelector('.tile-pic img');
        if (cur) cur.src = img.src;
      };
      img.onerror = () => frameFailed.set(id, Date.now());
      img.src = frameUrl(id);
    }
  };

  const openHistory = async (id) => {
    const c = cams.find((x) => x.id === id) || { id, name: id };
    const body = h('div', { class: 'camera-detail' }, h('p', {}, t('loading')));
    openDialog(`${c.name} · ${t('cam_history')}`, body, { testid: 'camera-detail', wide: true });
    let hist = [];
    let err = null;
    let avail = null;
    try {
      const now = Date.now();
      const [h1, rows] = await Promise.all([
        get(`/api/cameras/${encodeURIComponent(id)}/history?limit=200`),
        get(`/api/health/availability${qs({ group_by: 'camera', camera: id, from: now - 86400000, to: now })}`).catch(() => []),
      ]);
      hist = h1;
      avail = rows.find((r) => r.key === id) || null;
    } catch (e) {
      err = errorText(e);
    }
    const stream = c.stream ? `${c.stream.codec} ${c.stream.width}×${c.stream.height} ${c.stream.transport}` : '';
    const reconnects = Object.entries((c.counters && c.counters.reconnects) || {}).map(([k, v]) => `${label('rs_', k)} ${v}`).join('、');
    fill(body,
      h('div', { class: 'detail-grid' },
        picture(frameUrl(id), c.name, { cls: 'snap-large', testid: 'camera-detail-frame' }),
        h('dl', { class: 'info' },
          [[t('cam_id'), c.id], [t('cam_gb'), c.gb_code], [t('area'), fmtArea(c.area_path)], [t('jurisdiction'), c.jurisdiction],
            [t('state'), `${label('cs_', c.state)} ${stateReason(c)}`], [t('since'), fmtTime(c.since_ms)],
            [`${t('availability')}（${t('p_24h')}）`, avail ? `${pct(avail.availability, 2)} · ${t('intact_rate')} ${pct(avail.intact_rate, 2)}` : ''],
            [t('cam_fps'), c.fps_in !== undefined ? `${c.fps_in.toFixed(1)} / ${c.fps_analysed.toFixed(1)}` : ''],
            [t('cam_activity'), c.activity ? `${label('act_', c.activity.state)}${c.activity.evidence ? `（${label('ev_', c.activity.evidence)}）` : ''}` : ''],
            [t('cam_stream'), stream], [t('cam_reconnects'), reconnects], [t('cam_last_error'), c.last_error],
            [t('cam_tags'), (c.tags || []).join('、')]]
            .filter(([, v]) => v).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
      h('h3', {}, t('cam_history')),
      err ? h('p', { class: 'banner banner-error', role: 'alert' }, err)
        : hist.length ? h('table', { class: 'table', 'data-testid': 'camera-history' },
          h('thead', {}, h('tr', {}, [t('time'), t('state'), ''].map((x) => h('th', { scope: 'col' }, x)))),
          h('tbody', {}, hist.map((tr) => h('tr', {},
            h('td', {}, fmtTime(tr.at_ms)),
            h('td', {}, h('span', { class: ['chip', `cs-${tr.from.state}`] }, label('cs_', tr.from.state)), ' → ',
              h('span', { class: ['chip', `cs-${tr.to.state}`] }, label('cs_', tr.to.state))),
            h('td', {}, stateReason(tr.to))))))
          : h('p', { class: 'empty' }, t('cam_history_empty')));
  };

  root.append(h('div', { class: 'page-head' }, h('h1', {}, t('cameras_title'))), summary, bar, banner, grid);
  drawBar();

  const off = onFeed((msg) => {
    if (msg.kind !== 'health') return;
    const c = cams.find((x) => x.id === msg.camera);
    if (!c) return;
    Object.assign(c, { state: msg.to.state, reason: msg.to.reason, faults: msg.to.faults, since_ms: msg.to.since_ms });
    paint();
  });
  refresh().then(refreshFrames);
  const t1 = setInterval(refresh, REFRESH_MS);
  const t2 = setInterval(refreshFrames, FRAME_MS);
  return () => {
    alive = false;
    off();
    if (observer) observer.disconnect();
    clearInterval(t1);
    clearInterval(t2);
  };
}
