// 在线率 Online-rate dashboard: rates now, availability by area (county → township → village), the last
// 30 days as a chart, and the monthly CSV export.

import { get, qs, errorText } from '../api.js';
import { h, s, fill, select, pct, toast } from '../dom.js';
import { t, CAMERA_STATES } from '../i18n.js';
import { areaOptions, inArea } from '../areas.js';

const CST = 8 * 3600 * 1000;
const DAY = 86400 * 1000;

/** Unix ms of 00:00 CST of the day `ms` falls in. */
function cstDayStart(ms) {
  return Math.floor((ms + CST) / DAY) * DAY - CST;
}

/** Unix ms of the first instant of month `ym` (`2024-06`) in CST. */
function cstMonthStart(ym) {
  const [y, m] = ym.split('-').map(Number);
  return Date.UTC(y, m - 1, 1) - CST;
}

function cstMonth(ms, deltaMonths = 0) {
  const d = new Date(ms + CST);
  const x = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + deltaMonths, 1));
  return `${x.getUTCFullYear()}-${String(x.getUTCMonth() + 1).padStart(2, '0')}`;
}

/** Counts and rates over cameras, as `health::summarize` computes them. */
function summarize(cams) {
  const n = { enabled: 0, online: 0, degraded: 0, offline: 0, connecting: 0, maintenance: 0, disabled: 0 };
  let intact = 0;
  for (const c of cams) {
    n[c.state] = (n[c.state] || 0) + 1;
    if (c.state === 'online' && !(c.faults || []).length) intact += 1;
  }
  n.enabled = n.connecting + n.online + n.degraded + n.offline + n.maintenance;
  const base = n.enabled - n.maintenance;
  n.online_rate = base > 0 ? (n.online + n.degraded) / base : null;
  n.intact_rate = base > 0 ? intact / base : null;
  return n;
}

function rateClass(x, target = 0.95) {
  if (x === null || x === undefined) return 'rate-none';
  if (x >= target) return 'rate-good';
  if (x >= target - 0.05) return 'rate-warn';
  return 'rate-bad';
}

function bar(x) {
  const w = x === null || x === undefined ? 0 : Math.max(0, Math.min(1, x)) * 100;
  const outer = h('span', { class: 'bar', 'aria-hidden': 'true' });
  const inner = h('span', { class: ['bar-fill', rateClass(x)] });
  inner.style.width = `${w}%`;
  outer.append(inner);
  return outer;
}

/** An SVG line chart of daily availability and intact rate, with the 95% / 98% targets. */
function dailyChart(rows) {
  const W = 900;
  const H = 280;
  const pad = { l: 52, r: 16, t: 34, b: 30 };
  const vals = rows.flatMap((r) => [r.availability, r.intact_rate]).filter((v) => v !== null && v !== undefined);
  const lo = Math.max(0, Math.min(0.9, ...vals) - 0.05);
  const y = (v) => pad.t + (1 - (v - lo) / (1 - lo)) * (H - pad.t - pad.b);
  const x = (i) => pad.l + (rows.length <= 1 ? 0 : (i / (rows.length - 1)) * (W - pad.l - pad.r));
  const path = (key) => {
    let d = '';
    let pen = false;
    rows.forEach((r, i) => {
      const v = r[key];
      if (v === null || v === undefined) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = true;
    });
    return d.trim();
  };
  const ticks = [];
  for (let v = Math.ceil(lo * 10) / 10; v <= 1.0001; v += 0.1) ticks.push(v);
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${t('daily_chart')}. ${t('chart_desc')}`, 'data-testid': 'daily-chart',
    preserveAspectRatio: 'xMidYMid meet',
  },
  s('title', {}, t('daily_chart')),
  ticks.map((v) => [
    s('line', { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), class: 'grid' }),
    s('text', { x: pad.l - 8, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, `${Math.round(v * 100)}%`),
  ]),
  [0.95, 0.98].filter((v) => v >= lo).map((v) => [
    s('line', { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), class: 'target' }),
    s('text', { x: W - pad.r, y: y(v) - 4, class: 'axis target-label', 'text-anchor': 'end' }, `${Math.round(v * 100)}%`),
  ]),
  rows.map((r, i) => (i % Math.ceil(rows.length / 10) === 0 || i === rows.length - 1)
    && s('text', { x: x(i), y: H - pad.b + 20, class: 'axis', 'text-anchor': 'middle' }, r.key.slice(5))),
  s('path', { d: path('intact_rate'), class: 'series series-intact' }),
  s('path', { d: path('availability'), class: 'series series-online' }),
  rows.map((r, i) => r.availability !== null && r.availability !== undefined && s('circle', { cx: x(i), cy: y(r.availability), r: 3.5, class: 'pt pt-online', 'data-day': r.key },
    s('title', {}, `${r.key} ${t('online_rate')} ${pct(r.availability, 2)} · ${t('intact_rate')} ${pct(r.intact_rate, 2)}`))),
  s('g', { class: 'legend', transform: `translate(${pad.l + 8}, 18)` },
    s('line', { x1: 0, x2: 22, y1: -4, y2: -4, class: 'series series-online' }),
    s('text', { x: 28, y: 0, class: 'axis' }, t('online_rate')),
    s('line', { x1: 120, x2: 142, y1: -4, y2: -4, class: 'series series-intact' }),
    s('text', { x: 148, y: 0, class: 'axis' }, t('intact_rate'))));
  return svg;
}

export function mount(root) {
  let cams = [];
  let alive = true;
  let area = '';
  let period = '24h';
  const collapsed = new Set();

  const cards = h('div', { class: 'cards', 'data-testid': 'rate-cards' });
  const areaBar = h('div', { class: 'toolbar' });
  const tree = h('div', { class: 'panel', 'data-testid': 'area-tree' });
  const chart = h('div', { class: 'panel chart-panel' });
  const exportBox = h('div', { class: 'panel' });
  const banner = h('div', { class: 'banner banner-error', role: 'alert', hidden: true, 'data-testid': 'rates-error' });

  const showError = (e) => {
    banner.textContent = errorText(e);
    banner.hidden = false;
  };

  const paintCards = (sm, fromCameras) => {
    fill(cards,
      h('div', { class: ['card', 'card-big', rateClass(sm.online_rate)], 'data-testid': 'online-rate-card' },
        h('div', { class: 'card-label' }, t('online_now')),
        h('div', { class: 'card-value', 'data-testid': 'online-rate', 'data-value': sm.online_rate ?? '' }, pct(sm.online_rate)),
        h('div', { class: 'card-foot' }, t('target_online'))),
      h('div', { class: ['card', 'card-big', rateClass(sm.intact_rate, 0.98)], 'data-testid': 'intact-rate-card' },
        h('div', { class: 'card-label' }, t('intact_now')),
        h('div', { class: 'card-value', 'data-testid': 'intact-rate', 'data-value': sm.intact_rate ?? '' }, pct(sm.intact_rate)),
        h('div', { class: 'card-foot' }, t('target_intact'))),
      h('div', { class: 'card card-counts' },
        h('dl', { class: 'counts' }, ['enabled', ...CAMERA_STATES].map((k) => [
          h('dt', {}, t(`cnt_${k}`)), h('dd', { 'data-testid': `cnt-${k}` }, sm[k] ?? 0)])),
        fromCameras && h('p', { class: 'muted small' }, t('area_now_note')),
        area && h('p', { class: 'muted small', 'data-testid': 'rates-area-label' }, area)));
  };

  const refreshNow = async () => {
    try {
      cams = await get('/api/cameras');
      if (!alive) return;
      let sm;
      let local = false;
      try {
        sm = await get(`/api/health/summary${qs({ area })}`);
      } catch (e) {
        // A server without `?area=` answers 400: count the area's cameras here instead.
        if (!area || e.status !== 400) throw e;
        sm = summarize(cams.filter((c) => inArea(c.area_path, area)));
        local = true;
      }
      if (!alive) return;
      paintCards(sm, local);
      banner.hidden = true;
    } catch (e) {
      showError(e);
    }
  };

  const drawAreaBar = () => {
    fill(areaBar,
      select(t('area'), area, areaOptions(cams, t('area_all')), (v) => { area = v; refreshNow(); }, 'rates-area'),
      select(t('period'), period, [['24h', t('p_24h')], ['7d', t('p_7d')], ['30d', t('p_30d')]], (v) => { period = v; loadTree(); }, 'rates-period'));
  };

  const loadTree = async () => {
    const to = Date.now();
    const from = to - { '24h': DAY, '7d': 7 * DAY, '30d': 30 * DAY }[period];
    let rows;
    try {
      rows = await get(`/api/health/availability${qs({ group_by: 'area', from, to })}`);
    } catch (e) {
      fill(tree, h('h2', {}, t('by_area')), h('p', { class: 'banner banner-error', role: 'alert' }, errorText(e)));
      return;
    }
    if (!alive) return;
    const keys = new Set(rows.map((r) => r.key));
    const hasChildren = (k) => rows.some((r) => r.key.startsWith(`${k}/`));
    const hiddenBy = (k) => [...collapsed].some((c) => k.startsWith(`${c}/`));
    rows.sort((a, b) => a.key.localeCompare(b.key, 'zh-CN'));
    fill(tree,
      h('h2', {}, t('by_area')),
      rows.length ? h('table', { class: 'table tree-table', role: 'treegrid', 'aria-label': t('by_area') },
        h('thead', {}, h('tr', {}, [t('area'), t('availability'), t('intact_rate'), ''].map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, rows.filter((r) => !hiddenBy(r.key)).map((r) => {
          const parts = r.key.split('/');
          const depth = parts.length - 1;
          const kids = hasChildren(r.key);
          const open = !collapsed.has(r.key);
          const name = h('span', { class: 'tree-name' }, parts[parts.length - 1]);
          name.style.paddingLeft = `${depth * 1.5}em`;
          return h('tr', { 'data-testid': 'area-row', 'data-key': r.key, 'aria-level': depth + 1, class: area && inArea(r.key, area) ? 'selected' : null },
            h('td', {}, kids ? h('button', {
              type: 'button', class: 'tree-toggle', 'aria-expanded': String(open), 'aria-label': parts[parts.length - 1],
              onclick: () => { if (open) collapsed.add(r.key); else collapsed.delete(r.key); loadTree(); },
            }, open ? '▾' : '▸') : h('span', { class: 'tree-leaf', 'aria-hidden': 'true' }, '·'), name),
            h('td', { class: ['num', rateClass(r.availability)], 'data-testid': 'area-availability' }, bar(r.availability), pct(r.availability, 2)),
            h('td', { class: ['num', rateClass(r.intact_rate, 0.98)] }, pct(r.intact_rate, 2)),
            h('td', {}, h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'area-show', onclick: () => { area = r.key; drawAreaBar(); refreshNow(); window.scrollTo({ top: 0, behavior: 'smooth' }); } }, t('show_area'))));
        }))) : h('p', { class: 'empty' }, t('no_data')));
    void keys;
  };

  const loadChart = async () => {
    const to = Date.now();
    const from = cstDayStart(to) - 29 * DAY;
    try {
      const rows = await get(`/api/health/availability${qs({ group_by: 'day', from, to })}`);
      if (!alive) return;
      rows.sort((a, b) => a.key.localeCompare(b.key));
      fill(chart, h('h2', {}, t('daily_chart')),
        rows.length ? dailyChart(rows) : h('p', { class: 'empty' }, t('no_data')),
        rows.length && h('details', {}, h('summary', {}, `${t('daily_chart')}（表 table）`),
          h('table', { class: 'table', 'data-testid': 'daily-table' },
            h('thead', {}, h('tr', {}, [t('time'), t('online_rate'), t('intact_rate')].map((x) => h('th', { scope: 'col' }, x)))),
            h('tbody', {}, rows.map((r) => h('tr', {}, h('td', {}, r.key), h('td', { class: 'num' }, pct(r.availability, 2)), h('td', { class: 'num' }, pct(r.intact_rate, 2))))))));
    } catch (e) {
      fill(chart, h('h2', {}, t('daily_chart')), h('p', { class: 'banner banner-error', role: 'alert' }, errorText(e)));
    }
  };

  const drawExport = () => {
    const now = Date.now();
    const fromIn = h('input', { id: 'exp-from', type: 'month', value: cstMonth(now, -11), 'data-testid': 'export-from' });
    const toIn = h('input', { id: 'exp-to', type: 'month', value: cstMonth(now), 'data-testid': 'export-to' });
    const link = h('a', { class: 'btn btn-primary', 'data-testid': 'export-csv', download: '' }, t('export_csv'));
    const setHref = () => {
      if (!fromIn.value || !toIn.value) return;
      const from = cstMonthStart(fromIn.value);
      const to = Math.min(cstMonthStart(cstMonth(cstMonthStart(toIn.value), 1)), Date.now());
      link.href = `/api/health/availability${qs({ group_by: 'month', format: 'csv', from, to })}`;
      link.setAttribute('download', `availability_${fromIn.value}_${toIn.value}.csv`);
    };
    fromIn.addEventListener('change', setHref);
    toIn.addEventListener('change', setHref);
    setHref();
    fill(exportBox, h('h2', {}, t('export_csv')),
      h('div', { class: 'toolbar' },
        h('div', { class: 'field' }, h('label', { for: 'exp-from' }, t('export_from')), fromIn),
        h('div', { class: 'field' }, h('label', { for: 'exp-to' }, t('export_to')), toIn),
        link));
  };

  root.append(h('div', { class: 'page-head' }, h('h1', {}, t('rates_title'))), areaBar, banner, cards,
    h('div', { class: 'rates-grid' }, tree, h('div', {}, chart, exportBox)));
  drawAreaBar();
  drawExport();
  refreshNow().then(drawAreaBar).catch((e) => toast(errorText(e), 'error'));
  loadTree();
  loadChart();
  const timer = setInterval(refreshNow, 5000);
  const slow = setInterval(() => { loadTree(); loadChart(); }, 60000);
  return () => {
    alive = false;
    clearInterval(timer);
    clearInterval(slow);
  };
}
