// 规则 Zone and rule editor: the camera's latest frame with its zones, tripwires and masks drawn as SVG in
// normalised [0,1] coordinates; forms for every rule key; saves the whole document (`PUT /api/rules`,
// the shape of the TOML rules file, docs/rules.md) and shows each 422 field error next to its input.

import { ApiError, get, put, errorText } from '../api.js';
import { h, s, fill, toast } from '../dom.js';
import { t, typeName, label, RULE_KINDS, SEVERITIES, DAYS } from '../i18n.js';

const KIND_FIELDS = {
  intrusion: ['zone'],
  tripwire: ['line', 'direction'],
  loitering: ['zone', 'dwell'],
  gathering: ['zone', 'min_count', 'hold'],
  running: ['zone', 'min_speed', 'samples'],
  fighting: ['zone'],
  fall: ['zone', 'hold'],
  scene_anomaly: ['threshold', 'samples'],
};
const SPECIFIC = ['zone', 'line', 'direction', 'dwell', 'min_count', 'hold', 'min_speed', 'samples', 'threshold'];
const TRACK_KEYS = ['objects', 'min_score', 'min_area', 'max_area', 'masks'];
const OBJECTS = ['person', 'fallen_person', 'vehicle', 'other'];
const W = 1000;
const CAMERA_KEY = 'qly.rulesCamera';

const round = (v) => Math.round(v * 1000) / 1000;
const fmtPts = (pts) => (pts || []).map((p) => `${round(p[0])},${round(p[1])}`).join('; ');

/** `x,y; x,y` → [[x,y],…] with every value in 0..1, or null. */
function parsePts(text) {
  const pts = text.split(/[;；\n]/).map((x) => x.trim()).filter(Boolean).map((p) => p.split(/[,，\s]+/).map(Number));
  if (!pts.every((p) => p.length === 2 && p.every((v) => Number.isFinite(v) && v >= 0 && v <= 1))) return null;
  return pts;
}

function windowsOf(schedule) {
  if (schedule === undefined || schedule === null || schedule === 'always') return [];
  if (Array.isArray(schedule)) return schedule.map((w) => ({ ...w }));
  if (typeof schedule === 'object') return [{ ...schedule }];
  return null; // a form this editor does not know: shown as text
}

function fieldId(path) {
  return `rf-${path.replace(/[^A-Za-z0-9]+/g, '-')}`;
}

export function mount(root, { arg, perms }) {
  // Operators and engineers may read the rules; only administrators change them (manage_rules).
  const readOnly = Boolean(perms && !perms.has('manage_rules'));
  let doc = null;
  let cams = [];
  let camId = arg || sessionStorage.getItem(CAMERA_KEY) || '';
  let tool = 'select';
  let draft = [];
  let hover = null;
  let sel = null; // {kind: 'zone'|'rule', i}
  let dirty = false;
  let errors = [];
  let aspect = 0.75;
  let alive = true;

  const banner = h('div', { class: 'banner banner-error', role: 'alert', hidden: true, 'data-testid': 'rules-error' });
  const other = h('div', { class: 'banner banner-error', hidden: true, 'data-testid': 'rules-other-errors' });
  const status = h('span', { class: 'muted', role: 'status', 'data-testid': 'rules-status' });
  const camSel = h('select', { id: 'rules-camera', 'data-testid': 'rules-camera' });
  const saveBtn = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'rules-save', disabled: true }, t('save'));
  const toolbar = h('div', { class: 'tools', role: 'toolbar', 'aria-label': t('tool') });
  const hint = h('p', { class: 'hint', 'data-testid': 'draw-hint' });
  const img = h('img', { class: 'stage-img', alt: '', 'data-testid': 'rules-frame' });
  const ph = h('div', { class: 'pic-placeholder stage-ph', hidden: true }, t('no_picture'));
  const svg = s('svg', { class: 'stage-svg', 'data-testid': 'rules-canvas', role: 'application', 'aria-label': t('rules_title'), tabindex: '0' });
  const stage = h('div', { class: 'stage' }, img, ph, svg);
  const side = h('div', { class: 'rules-side', 'data-testid': 'rules-forms' });

  const H = () => Math.round(W * aspect);
  const toSvg = (p) => [p[0] * W, p[1] * H()];
  const camZones = () => (doc ? doc.zones.map((z, i) => [z, i]).filter(([z]) => z.camera === camId) : []);
  const camRules = () => (doc ? doc.rules.map((r, i) => [r, i]).filter(([r]) => r.camera === camId) : []);

  const setDirty = (v = true) => {
    dirty = v && !readOnly;
    saveBtn.disabled = !dirty || !doc;
    status.textContent = dirty ? t('unsaved') : '';
  };

  // ---------------------------------------------------------------- canvas
  const polyPoints = (pts) => pts.map((p) => toSvg(p).map((v) => v.toFixed(1)).join(',')).join(' ');

  function handles(pts, onMove) {
    return pts.map((p, k) => {
      const [x, y] = toSvg(p);
      const c = s('circle', { cx: x, cy: y, r: 9, class: 'handle', 'data-testid': 'handle' });
      c.addEventListener('pointerdown', (e) => {
        if (tool !== 'select' || readOnly) return;
        e.stopPropagation();
        e.preventDefault();
        c.setPointerCapture(e.pointerId);
        const move = (ev) => {
          const q = norm(ev);
          pts[k] = q;
          onMove();
          setDirty();
          drawCanvas();
        };
        const up = () => {
          c.removeEventListener('pointermove', move);
          c.removeEventListener('pointerup', up);
          drawForms();
        };
        c.addEventListener('pointermove', move);
        c.addEventListener('pointerup', up);
      });
      return c;
    });
  }

  function centroid(pts) {
    const n = pts.length || 1;
    return [pts.reduce((a, p) => a + p[0], 0) / n, pts.reduce((a, p) => a + p[1], 0) / n];
  }

  function wire(rule, i, selected) {
    const [a, b] = rule.line.map(toSvg);
    const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
    const len = Math.hypot(dx, dy) || 1;
    const nA = [dy / len, -dx / len]; // side A: left of a→b as drawn on the screen
    const m = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
    const arrow = (dir) => {
      const tip = [m[0] + dir[0] * 40, m[1] + dir[1] * 40];
      const base = [m[0] + dir[0] * 12, m[1] + dir[1] * 12];
      const side = [-dir[1] * 9, dir[0] * 9];
      return s('path', { class: 'wire-arrow', d: `M${base[0]},${base[1]} L${tip[0]},${tip[1]} M${tip[0] - dir[0] * 14 + side[0]},${tip[1] - dir[1] * 14 + side[1]} L${tip[0]},${tip[1]} L${tip[0] - dir[0] * 14 - side[0]},${tip[1] - dir[1] * 14 - side[1]}` });
    };
    const dir = rule.direction || 'both';
    const g = s('g', { class: ['wire', selected && 'selected'], 'data-testid': 'shape-wire', 'data-rule-id': rule.id || '' },
      s('line', { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: 'wire-line' }),
      s('text', { x: a[0] - 14, y: a[1] - 10, class: 'wire-label' }, 'A'),
      s('text', { x: b[0] + 6, y: b[1] - 10, class: 'wire-label' }, 'B'),
      (dir === 'a_to_b' || dir === 'both') && arrow([-nA[0], -nA[1]]),
      (dir === 'b_to_a' || dir === 'both') && arrow(nA),
      s('text', { x: m[0] + nA[0] * 60, y: m[1] + nA[1] * 60, class: 'side-label' }, 'A'),
      s('text', { x: m[0] - nA[0] * 60, y: m[1] - nA[1] * 60, class: 'side-label' }, 'B'),
      s('title', {}, `${rule.name || rule.id} · ${typeName('tripwire')}`));
    g.addEventListener('click', (e) => pick(e, 'rule', i));
    return g;
  }

  function drawCanvas() {
    const hh = H();
    svg.setAttribute('viewBox', `0 0 ${W} ${hh}`);
    stage.style.aspectRatio = `${W} / ${hh}`;
    const out = [];
    for (const [z, i] of camZones()) {
      if (!Array.isArray(z.polygon) || z.polygon.length < 2) continue;
      const selected = sel && sel.kind === 'zone' && sel.i === i;
      const g = s('g', { class: ['zone', selected && 'selected'], 'data-testid': 'shape-zone', 'data-zone-id': z.id || '' },
        s('polygon', { points: polyPoints(z.polygon) }),
        s('text', { x: toSvg(centroid(z.polygon))[0], y: toSvg(centroid(z.polygon))[1], class: 'zone-label', 'text-anchor': 'middle' }, z.name || z.id),
        s('title', {}, `${z.name || ''} (${z.id})`));
      g.addEventListener('click', (e) => pick(e, 'zone', i));
      out.push(g);
      if (selected) out.push(...handles(z.polygon, () => {}));
    }
    for (const [r, i] of camRules()) {
      const selected = sel && sel.kind === 'rule' && sel.i === i;
      if (Array.isArray(r.zone) && r.zone.length >= 2) {
        const g = s('g', { class: ['zone', 'inline', selected && 'selected'], 'data-testid': 'shape-inline' },
          s('polygon', { points: polyPoints(r.zone) }), s('title', {}, `${r.name || r.id} · ${t('inline_polygon')}`));
        g.addEventListener('click', (e) => pick(e, 'rule', i));
        out.push(g);
        if (selected) out.push(...handles(r.zone, () => {}));
      }
      if (Array.isArray(r.line) && r.line.length === 2) {
        out.push(wire(r, i, selected));
        if (selected) out.push(...handles(r.line, () => {}));
      }
      for (const m of r.masks || []) {
        if (!Array.isArray(m) || m.length < 2) continue;
        const g = s('g', { class: ['mask', selected && 'selected'], 'data-testid': 'shape-mask' }, s('polygon', { points: polyPoints(m) }), s('title', {}, `${t('masks')} · ${r.name || r.id}`));
        g.addEventListener('click', (e) => pick(e, 'rule', i));
        out.push(g);
      }
    }
    if (draft.length) {
      const pts = hover ? [...draft, hover] : draft;
      out.push(s('polyline', { points: polyPoints(pts), class: ['draft', tool === 'line' && 'draft-line'], 'data-testid': 'draft' }));
      out.push(...draft.map((p) => s('circle', { cx: toSvg(p)[0], cy: toSvg(p)[1], r: 6, class: 'draft-pt' })));
    }
    fill(svg, out);
    svg.classList.toggle('drawing', tool !== 'select');
  }

  function norm(e) {
    const r = svg.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
    return [round(x), round(y)];
  }

  function pick(e, kind, i) {
    if (tool !== 'select') return;
    e.stopPropagation();
    sel = { kind, i };
    drawCanvas();
    drawForms();
    const el = side.querySelector(`[data-field="${kind === 'zone' ? 'zones' : 'rules'}[${i}]"]`);
    if (el) {
      el.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      el.querySelector('input,select')?.focus({ preventScroll: true });
    }
  }

  const uniqueId = (prefix, taken) => {
    let n = 1;
    while (taken.has(`${prefix}-${n}`)) n += 1;
    return `${prefix}-${n}`;
  };

  function finishPolygon() {
    // A double-click also delivered two clicks at (nearly) the same place: keep one point.
    const pts = draft.filter((p, k) => k === 0 || Math.hypot(p[0] - draft[k - 1][0], p[1] - draft[k - 1][1]) > 0.004);
    if (pts.length < 3) {
      toast(t('polygon_too_small'), 'error');
      return;
    }
    if (tool === 'mask') {
      const r = sel && sel.kind === 'rule' ? doc.rules[sel.i] : null;
      if (r) r.masks = [...(r.masks || []), pts];
    } else {
      const taken = new Set(camZones().map(([z]) => z.id));
      const id = uniqueId('zone', taken);
      doc.zones.push({ id, camera: camId, name: `${t('zone')} ${id.split('-')[1]}`, polygon: pts });
      sel = { kind: 'zone', i: doc.zones.length - 1 };
    }
    draft = [];
    hover = null;
    setTool('select');
    setDirty();
    drawForms();
  }

  function finishLine() {
    const taken = new Set(doc.rules.map((r) => r.id));
    const id = uniqueId('tripwire', taken);
    const r = sel && sel.kind === 'rule' && doc.rules[sel.i].kind === 'tripwire' && !doc.rules[sel.i].line ? doc.rules[sel.i] : null;
    if (r) r.line = draft.slice(0, 2);
    else {
      doc.rules.push({ id, camera: camId, kind: 'tripwire', line: draft.slice(0, 2), direction: 'both' });
      sel = { kind: 'rule', i: doc.rules.length - 1 };
    }
    draft = [];
    hover = null;
    setTool('select');
    setDirty();
    drawForms();
  }

  svg.addEventListener('click', (e) => {
    if (!doc || tool === 'select') {
      if (tool === 'select' && e.target === svg && sel) {
        sel = null;
        drawCanvas();
        drawForms();
      }
      return;
    }
    draft.push(norm(e));
    if (tool === 'line' && draft.length >= 2) finishLine();
    // The second click of a double-click closes the polygon (its point is a duplicate, dropped).
    else if ((tool === 'polygon' || tool === 'mask') && e.detail >= 2) finishPolygon();
    else drawCanvas();
  });
  svg.addEventListener('dblclick', (e) => {
    e.preventDefault();
    if ((tool === 'polygon' || tool === 'mask') && draft.length) finishPolygon();
  });
  svg.addEventListener('mousemove', (e) => {
    if (!draft.length) return;
    hover = norm(e);
    drawCanvas();
  });
  svg.addEventListener('mouseleave', () => {
    hover = null;
    if (draft.length) drawCanvas();
  });
  const onKey = (e) => {
    if (tool === 'select' || !root.isConnected) return;
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement) return;
    if (e.key === 'Escape') {
      draft = [];
      setTool('select');
    } else if (e.key === 'Enter' && (tool === 'polygon' || tool === 'mask')) {
      e.preventDefault();
      finishPolygon();
    } else if (e.key === 'Backspace' && draft.length) {
      e.preventDefault();
      draft.pop();
      drawCanvas();
    }
  };
  document.addEventListener('keydown', onKey);

  function setTool(next) {
    tool = next;
    if (tool === 'select') draft = [];
    for (const b of toolbar.querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.tool === tool));
    hint.textContent = t(`draw_hint_${tool === 'line' ? 'line' : tool}`);
    drawCanvas();
    if (tool !== 'select') svg.focus({ preventScroll: true });
  }

  function drawToolbar() {
    const maskOk = sel && sel.kind === 'rule' && doc && doc.rules[sel.i] && doc.rules[sel.i].kind !== 'scene_anomaly';
    fill(toolbar, [['select', 'tool_select'], ['polygon', 'tool_polygon'], ['line', 'tool_line'], ['mask', 'tool_mask']].map(([k, key]) =>
      h('button', {
        type: 'button', class: 'btn', 'data-tool': k, 'data-testid': `tool-${k}`, 'aria-pressed': String(tool === k),
        disabled: !doc || (readOnly && k !== 'select') || (k === 'mask' && !maskOk),
        onclick: () => setTool(tool === k ? 'select' : k),
      }, t(key))));
  }

  // ---------------------------------------------------------------- forms
  const clearErrors = (path) => {
    const before = errors.length;
    errors = errors.filter((e) => !(e.field === path || e.field.startsWith(`${path}.`) || e.field.startsWith(`${path}[`)));
    if (errors.length !== before) placeErrors();
  };

  function fieldBox(path, text, input, extra) {
    input.id = input.id || fieldId(path);
    input.dataset.field = path;
    const box = h('div', { class: 'field', 'data-field-box': path }, h('label', { for: input.id }, text), input, extra);
    input.addEventListener('change', () => clearErrors(path));
    return box;
  }

  function textField(obj, key, path, text, { placeholder, onset, testid } = {}) {
    const input = h('input', { type: 'text', value: obj[key] ?? '', placeholder, 'data-testid': testid, autocomplete: 'off' });
    input.addEventListener('change', () => {
      const v = input.value.trim();
      if (v) obj[key] = v;
      else delete obj[key];
      setDirty();
      if (onset) onset();
      drawCanvas();
    });
    return fieldBox(path, text, input);
  }

  function numField(obj, key, path, text, { step = 'any', min, max, int = false } = {}) {
    const input = h('input', { type: 'number', step, min, max, value: obj[key] ?? '', placeholder: t('default_ph') });
    input.addEventListener('change', () => {
      const v = input.value.trim();
      if (v === '') delete obj[key];
      else obj[key] = int ? parseInt(v, 10) : Number(v);
      setDirty();
    });
    return fieldBox(path, text, input);
  }

  function checkField(obj, key, path, text, dflt) {
    const input = h('input', { type: 'checkbox', checked: obj[key] ?? dflt });
    input.addEventListener('change', () => {
      obj[key] = input.checked;
      setDirty();
    });
    input.id = fieldId(path);
    input.dataset.field = path;
    return h('div', { class: 'field field-check', 'data-field-box': path }, input, h('label', { for: input.id }, text));
  }

  function selectField(obj, key, path, text, options, { onset, testid } = {}) {
    const input = h('select', { 'data-testid': testid }, options.map(([v, txt]) => h('option', { value: v, selected: (obj[key] ?? '') === v }, txt)));
    input.addEventListener('change', () => {
      if (input.value === '') delete obj[key];
      else obj[key] = input.value;
      setDirty();
      if (onset) onset();
      drawCanvas();
    });
    return fieldBox(path, text, input);
  }

  function pointsField(obj, key, path, text, testid) {
    const input = h('textarea', { rows: 2, value: fmtPts(obj[key]), 'data-testid': testid, spellcheck: 'false' });
    input.value = fmtPts(obj[key]);
    const err = h('p', { class: 'field-error local', hidden: true }, t('bad_points'));
    input.addEventListener('change', () => {
      const pts = parsePts(input.value);
      err.hidden = Boolean(pts);
      input.setAttribute('aria-invalid', pts ? 'false' : 'true');
      if (!pts) return;
      obj[key] = pts;
      setDirty();
      drawCanvas();
    });
    return fieldBox(path, text, input, err);
  }

  function scheduleField(rule, path) {
    const wins = windowsOf(rule.schedule);
    const box = h('fieldset', { class: 'schedule', 'data-field': path, 'data-field-box': path }, h('legend', {}, t('schedule')));
    if (wins === null) {
      box.append(h('code', {}, JSON.stringify(rule.schedule)));
      return box;
    }
    const save = () => {
      const clean = wins.map((w) => {
        const o = {};
        if (w.days && w.days.length && w.days.length < 7) o.days = DAYS.filter((d) => w.days.includes(d));
        if (w.from) o.from = w.from;
        if (w.to) o.to = w.to;
        return o;
      });
      if (!clean.length) delete rule.schedule;
      else rule.schedule = clean.length === 1 ? clean[0] : clean;
      setDirty();
      clearErrors(path);
    };
    const always = h('input', { type: 'checkbox', id: fieldId(`${path}-always`), checked: wins.length === 0 });
    always.addEventListener('change', () => {
      if (always.checked) wins.length = 0;
      else if (!wins.length) wins.push({ from: '22:00', to: '06:00' });
      save();
      drawForms();
    });
    box.append(h('div', { class: 'field field-check' }, always, h('label', { for: always.id }, t('always'))));
    wins.forEach((w, k) => {
      const wp = Array.isArray(rule.schedule) ? `${path}[${k}]` : path;
      const days = h('div', { class: 'days', role: 'group', 'aria-label': t('days_label'), 'data-field': `${wp}.days` }, DAYS.map((d) => {
        const id = fieldId(`${path}-${k}-${d}`);
        const cb = h('input', { type: 'checkbox', id, checked: !w.days || w.days.includes(d) });
        cb.addEventListener('change', () => {
          const set = new Set(w.days || DAYS);
          if (cb.checked) set.add(d);
          else set.delete(d);
          w.days = DAYS.filter((x) => set.has(x));
          save();
        });
        return h('span', { class: 'day' }, cb, h('label', { for: id }, t(`d_${d}`)));
      }));
      const time = (key) => {
        const input = h('input', { type: 'text', value: w[key] || '', placeholder: 'HH:MM', size: 5, pattern: '\\d{2}:\\d{2}', 'aria-label': t(key), id: fieldId(`${wp}.${key}`) });
        input.dataset.field = `${wp}.${key}`;
        input.addEventListener('change', () => {
          if (input.value.trim()) w[key] = input.value.trim();
          else delete w[key];
          save();
        });
        return h('span', { class: 'field-inline', 'data-field-box': `${wp}.${key}` }, h('label', { for: input.id }, t(key)), input);
      };
      box.append(h('div', { class: 'window', 'data-field-box': wp }, days, time('from'), time('to'),
        h('button', { type: 'button', class: 'btn btn-small btn-quiet', 'aria-label': `${t('delete')} ${k + 1}`, onclick: () => { wins.splice(k, 1); save(); drawForms(); } }, '✕')));
    });
    if (wins.length) box.append(h('button', { type: 'button', class: 'btn btn-small', onclick: () => { wins.push({}); save(); drawForms(); } }, t('add_window')));
    return box;
  }

  function zoneForm(z, i) {
    const p = `zones[${i}]`;
    const oldId = z.id;
    const selected = sel && sel.kind === 'zone' && sel.i === i;
    return h('fieldset', { class: ['item', selected && 'selected'], 'data-field': p, 'data-field-box': p, 'data-testid': 'zone-item', 'data-zone-id': z.id || '' },
      h('legend', {}, h('button', { type: 'button', class: 'link', onclick: (e) => { tool = 'select'; pick(e, 'zone', i); } }, `${t('zone')} · ${z.name || z.id || ''}`)),
      h('div', { class: 'row2' },
        textField(z, 'id', `${p}.id`, t('zone_id'), {
          testid: 'zone-id',
          onset: () => {
            // Rules of this camera that named the zone follow its new id.
            for (const r of doc.rules) if (r.camera === camId && r.zone === oldId && z.id) r.zone = z.id;
            drawRuleZoneOptions();
          },
        }),
        textField(z, 'name', `${p}.name`, t('zone_name'), { testid: 'zone-name' })),
      pointsField(z, 'polygon', `${p}.polygon`, t('points'), 'zone-points'),
      h('div', { class: 'item-actions' },
        h('button', {
          type: 'button', class: 'btn btn-small', 'data-testid': 'zone-add-rule',
          onclick: () => {
            const id = uniqueId(`${z.id || 'zone'}-intrusion`, new Set(doc.rules.map((r) => r.id)));
            doc.rules.push({ id, camera: camId, kind: 'intrusion', zone: z.id });
            sel = { kind: 'rule', i: doc.rules.length - 1 };
            setDirty();
            drawForms();
            drawCanvas();
          },
        }, t('add_rule_for_zone')),
        h('button', {
          type: 'button', class: 'btn btn-small btn-quiet', 'data-testid': 'zone-delete',
          onclick: () => { doc.zones.splice(i, 1); sel = null; errors = []; setDirty(); drawForms(); drawCanvas(); },
        }, t('delete'))));
  }

  function drawRuleZoneOptions() {
    // Zone ids changed: the rule forms' zone pickers list them.
    drawForms();
  }

  function ruleForm(r, i) {
    const p = `rules[${i}]`;
    const kind = r.kind || 'intrusion';
    const fields = KIND_FIELDS[kind] || [];
    const selected = sel && sel.kind === 'rule' && sel.i === i;
    const zoneIds = camZones().map(([z]) => z.id).filter(Boolean);
    const zoneSel = () => {
      const inline = Array.isArray(r.zone);
      const input = h('select', { 'data-testid': 'rule-zone' },
        h('option', { value: '' }, kind === 'intrusion' || kind === 'loitering' || kind === 'gathering' ? '—' : t('all')),
        zoneIds.map((id) => h('option', { value: id, selected: r.zone === id }, id)),
        inline && h('option', { value: '__inline', selected: true }, t('inline_polygon')),
        typeof r.zone === 'string' && r.zone && !zoneIds.includes(r.zone) && h('option', { value: r.zone, selected: true }, r.zone));
      input.addEventListener('change', () => {
        if (input.value === '') delete r.zone;
        else if (input.value !== '__inline') r.zone = input.value;
        setDirty();
        drawCanvas();
      });
      const box = fieldBox(`${p}.zone`, t('zone'), input);
      if (inline) box.append(pointsField(r, 'zone', `${p}.zone`, t('inline_polygon'), 'rule-inline'));
      return box;
    };
    const onKind = () => {
      const k = r.kind;
      const keep = KIND_FIELDS[k] || [];
      for (const key of SPECIFIC) if (!keep.includes(key)) delete r[key];
      if (k === 'scene_anomaly') for (const key of TRACK_KEYS) delete r[key];
      if (k === 'tripwire') delete r.rearm;
      if (k === 'fall' && r.objects && r.objects.some((o) => o !== 'fallen_person')) delete r.objects;
      drawForms();
      if (k === 'tripwire' && !r.line) setTool('line');
    };
    const objects = () => {
      const allowed = kind === 'fall' ? ['fallen_person'] : OBJECTS;
      const cur = r.objects || (kind === 'fall' ? ['fallen_person'] : ['person']);
      return h('fieldset', { class: 'objects', 'data-field': `${p}.objects`, 'data-field-box': `${p}.objects` }, h('legend', {}, t('objects')),
        allowed.map((o) => {
          const id = fieldId(`${p}-obj-${o}`);
          const cb = h('input', { type: 'checkbox', id, checked: cur.includes(o) });
          cb.addEventListener('change', () => {
            const set = new Set(r.objects || cur);
            if (cb.checked) set.add(o);
            else set.delete(o);
            const list = OBJECTS.filter((x) => set.has(x));
            if (list.length) r.objects = list;
            else delete r.objects;
            setDirty();
            clearErrors(`${p}.objects`);
          });
          return h('span', { class: 'day' }, cb, h('label', { for: id }, label('obj_', o)));
        }));
    };
    return h('fieldset', { class: ['item', selected && 'selected'], 'data-field': p, 'data-field-box': p, 'data-testid': 'rule-item', 'data-rule-id': r.id || '' },
      h('legend', {}, h('button', { type: 'button', class: 'link', onclick: (e) => { tool = 'select'; pick(e, 'rule', i); } }, `${typeName(kind)} · ${r.name || r.id || ''}`)),
      h('div', { class: 'row2' },
        textField(r, 'id', `${p}.id`, t('rule_id'), { testid: 'rule-id' }),
        textField(r, 'name', `${p}.name`, t('rule_name'), { testid: 'rule-name' })),
      h('div', { class: 'row2' },
        selectField(r, 'kind', `${p}.kind`, t('kind'), RULE_KINDS.map((k) => [k, typeName(k)]), { onset: onKind, testid: 'rule-kind' }),
        selectField(r, 'severity', `${p}.severity`, t('severity'), [['', t('default_ph')], ...SEVERITIES.map((x) => [x, label('sev_', x)])], { testid: 'rule-severity' })),
      h('div', { class: 'row2' },
        checkField(r, 'enabled', `${p}.enabled`, t('enabled'), true),
        checkField(r, 'dispatch', `${p}.dispatch`, t('dispatch'), false)),
      fields.includes('zone') && zoneSel(),
      fields.includes('line') && pointsField(r, 'line', `${p}.line`, t('line'), 'rule-line'),
      fields.includes('direction') && selectField(r, 'direction', `${p}.direction`, t('direction'), [['', t('dir_both')], ['a_to_b', t('dir_a_to_b')], ['b_to_a', t('dir_b_to_a')]]),
      h('div', { class: 'row3' },
        fields.includes('dwell') && textField(r, 'dwell', `${p}.dwell`, t('dwell'), { placeholder: t('duration_ph') }),
        fields.includes('min_count') && numField(r, 'min_count', `${p}.min_count`, t('min_count'), { step: 1, min: 2, int: true }),
        fields.includes('hold') && textField(r, 'hold', `${p}.hold`, t('hold'), { placeholder: t('duration_ph') }),
        fields.includes('min_speed') && numField(r, 'min_speed', `${p}.min_speed`, t('min_speed'), { min: 0 }),
        fields.includes('samples') && numField(r, 'samples', `${p}.samples`, t('samples'), { step: 1, min: 1, int: true }),
        fields.includes('threshold') && numField(r, 'threshold', `${p}.threshold`, t('threshold'), { min: 0 }),
        textField(r, 'cooldown', `${p}.cooldown`, t('cooldown'), { placeholder: t('duration_ph') }),
        kind !== 'tripwire' && textField(r, 'rearm', `${p}.rearm`, t('rearm'), { placeholder: t('duration_ph') })),
      kind !== 'scene_anomaly' && objects(),
      kind !== 'scene_anomaly' && h('div', { class: 'row3' },
        numField(r, 'min_score', `${p}.min_score`, t('min_score'), { min: 0, max: 1 }),
        numField(r, 'min_area', `${p}.min_area`, t('min_area'), { min: 0, max: 1 }),
        numField(r, 'max_area', `${p}.max_area`, t('max_area'), { min: 0, max: 1 })),
      kind !== 'scene_anomaly' && h('div', { class: 'field', 'data-field': `${p}.masks`, 'data-field-box': `${p}.masks` },
        h('span', {}, `${t('masks')}：${t('masks_n', (r.masks || []).length)} `),
        (r.masks || []).length > 0 && h('button', { type: 'button', class: 'btn btn-small btn-quiet', onclick: () => { delete r.masks; setDirty(); drawForms(); drawCanvas(); } }, t('delete'))),
      scheduleField(r, `${p}.schedule`),
      h('div', { class: 'item-actions' },
        h('button', { type: 'button', class: 'btn btn-small btn-quiet', 'data-testid': 'rule-delete', onclick: () => { doc.rules.splice(i, 1); sel = null; errors = []; setDirty(); drawForms(); drawCanvas(); } }, t('delete'))));
  }

  function drawForms() {
    drawToolbar();
    if (!doc) {
      fill(side);
      return;
    }
    const zones = camZones();
    const rules = camRules();
    fill(side,
      h('h2', {}, t('zones')),
      zones.length ? zones.map(([z, i]) => zoneForm(z, i)) : h('p', { class: 'empty' }, t('no_zones')),
      h('h2', {}, t('rules')),
      rules.length ? rules.map(([r, i]) => ruleForm(r, i)) : h('p', { class: 'empty' }, t('no_rules')),
      h('button', {
        type: 'button', class: 'btn', 'data-testid': 'rule-add',
        onclick: () => {
          const id = uniqueId(`${camId}-rule`, new Set(doc.rules.map((r) => r.id)));
          const z = camZones()[0];
          doc.rules.push(z ? { id, camera: camId, kind: 'intrusion', zone: z[0].id } : { id, camera: camId, kind: 'fall' });
          sel = { kind: 'rule', i: doc.rules.length - 1 };
          setDirty();
          drawForms();
          drawCanvas();
        },
      }, t('add_rule')));
    if (readOnly) {
      for (const el of side.querySelectorAll('input, select, textarea, .item-actions button, [data-testid="rule-add"]')) el.disabled = true;
    }
    placeErrors();
  }

  /** Puts each 422 field error next to the input its path names (or its closest parent), the rest on top. */
  function placeErrors() {
    for (const el of side.querySelectorAll('.field-error:not(.local)')) el.remove();
    for (const el of side.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
    const rest = [];
    for (const e of errors) {
      let path = e.field;
      let box = null;
      while (path) {
        box = side.querySelector(`[data-field-box="${CSS.escape(path)}"]`);
        if (box) break;
        const shorter = path.replace(/(\.[^.[\]]+|\[\d+\])$/, '');
        if (shorter === path) break;
        path = shorter;
      }
      if (!box) {
        rest.push(e);
        continue;
      }
      const id = `err-${Math.random().toString(36).slice(2, 8)}`;
      const msg = h('p', { class: 'field-error', id, role: 'alert', 'data-testid': 'field-error', 'data-error-field': e.field }, path === e.field ? e.message : `${e.field}: ${e.message}`);
      const input = box.querySelector(`[data-field="${CSS.escape(path)}"]`) || box.querySelector('input,select,textarea');
      if (input && input.tagName !== 'FIELDSET') {
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-describedby', id);
      }
      if (box.tagName === 'FIELDSET') box.querySelector('legend').after(msg);
      else box.append(msg);
    }
    if (rest.length) {
      const cam = (f) => {
        const m = /^(zones|rules)\[(\d+)\]/.exec(f);
        const item = m && doc && doc[m[1]][Number(m[2])];
        return item && item.camera && item.camera !== camId ? ` (${t('camera')} ${item.camera})` : '';
      };
      fill(other, h('strong', {}, t('other_errors')), h('ul', {}, rest.map((e) => h('li', { 'data-testid': 'other-error' }, `${e.field}${cam(e.field)}: ${e.message}`))));
      other.hidden = false;
    } else {
      other.hidden = true;
    }
  }

  // ---------------------------------------------------------------- camera, load, save
  function loadFrame() {
    const cam = cams.find((c) => c.id === camId);
    if (cam && cam.stream && cam.stream.width && cam.stream.height) aspect = cam.stream.height / cam.stream.width;
    img.hidden = false;
    ph.hidden = true;
    img.src = camId ? `/api/cameras/${encodeURIComponent(camId)}/frame.jpg?t=${Date.now()}` : '';
  }
  img.addEventListener('load', () => {
    if (img.naturalWidth && img.naturalHeight) aspect = img.naturalHeight / img.naturalWidth;
    drawCanvas();
  });
  img.addEventListener('error', () => {
    img.hidden = true;
    ph.hidden = false;
  });

  const drawCamSel = () => {
    const withRules = new Set(doc ? [...doc.rules, ...doc.zones].map((x) => x.camera) : []);
    fill(camSel, cams.map((c) => h('option', { value: c.id, selected: c.id === camId }, `${c.name} (${c.id})${withRules.has(c.id) ? ' ★' : ''}`)));
  };
  camSel.addEventListener('change', () => {
    camId = camSel.value;
    sessionStorage.setItem(CAMERA_KEY, camId);
    sel = null;
    draft = [];
    setTool('select');
    loadFrame();
    drawForms();
    drawCanvas();
  });

  const loadDoc = async () => {
    try {
      const d = await get('/api/rules');
      doc = { ...d, zones: Array.isArray(d && d.zones) ? d.zones : [], rules: Array.isArray(d && d.rules) ? d.rules : [] };
      banner.hidden = true;
    } catch (e) {
      doc = null;
      banner.textContent = `${t('rules_unavailable')}：${errorText(e)}`;
      banner.hidden = false;
    }
    setDirty(false);
  };

  saveBtn.addEventListener('click', async () => {
    if (!doc) return;
    saveBtn.disabled = true;
    banner.hidden = true;
    try {
      await put('/api/rules', doc);
      errors = [];
      await loadDoc();
      toast(t('saved'), 'ok');
      status.textContent = t('saved');
      drawCamSel();
      drawForms();
      drawCanvas();
    } catch (e) {
      saveBtn.disabled = false;
      errors = e instanceof ApiError ? e.fields.map((f) => ({ field: String(f.field || ''), message: String(f.message || '') })) : [];
      banner.textContent = `${t('save_failed')}：${errorText(e instanceof ApiError ? new ApiError(e.status, e.message) : e)}`;
      banner.hidden = false;
      drawForms();
      const first = side.querySelector('.field-error');
      if (first) first.scrollIntoView({ block: 'center' });
    }
  });

  const beforeUnload = (e) => {
    if (dirty) {
      e.preventDefault();
      e.returnValue = '';
    }
  };
  window.addEventListener('beforeunload', beforeUnload);

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, t('rules_title')),
      h('div', { class: 'field field-inline' }, h('label', { for: 'rules-camera' }, t('pick_camera')), camSel),
      !readOnly && saveBtn, readOnly && h('span', { class: 'chip', 'data-testid': 'rules-readonly' }, t('read_only')), status),
    banner, other,
    h('div', { class: 'rules-layout' },
      h('div', { class: 'rules-stage' }, toolbar, stage, hint),
      side));

  (async () => {
    try {
      cams = await get('/api/cameras');
    } catch (e) {
      toast(errorText(e), 'error');
    }
    await loadDoc();
    if (!alive) return;
    if (!cams.some((c) => c.id === camId)) {
      const firstWithRules = doc && doc.rules[0] ? doc.rules[0].camera : null;
      camId = firstWithRules && cams.some((c) => c.id === firstWithRules) ? firstWithRules : (cams[0] && cams[0].id) || '';
    }
    drawCamSel();
    loadFrame();
    setTool('select');
    drawForms();
    drawCanvas();
  })();

  return () => {
    alive = false;
    document.removeEventListener('keydown', onKey);
    window.removeEventListener('beforeunload', beforeUnload);
  };
}
