// 国标设备 GB/T 28181 devices: which cameras, NVRs and platforms are registered, from where, whether
// they keep alive, and their catalogs (whose channels are cameras on the camera page).

import { get, post, errorText } from '../api.js';
import { h, fill, fmtTime, toast } from '../dom.js';
import { t, getLang } from '../i18n.js';

export function mount(root, { perms }) {
  let alive = true;
  let open = null;
  const cards = h('div', { class: 'cards', 'data-testid': 'gb-cards' });
  const listBox = h('section', { class: 'panel' });
  const detailBox = h('section', { class: 'panel', hidden: true, 'data-testid': 'gb-detail' });
  const banner = h('div', { class: 'banner banner-error', role: 'alert', hidden: true, 'data-testid': 'gb-error' });
  const kinds = { platform: 'gb_kind_platform', recorder: 'gb_kind_recorder', camera: 'gb_kind_camera', device: 'gb_kind_device' };
  const types = { 200: 'gb_kind_platform', 111: 'gb_kind_recorder', 118: 'gb_kind_recorder', 131: 'gb_kind_camera', 132: 'gb_kind_camera', 215: 'gb_type_business', 216: 'gb_type_organisation' };
  const reason = (d) => (d.reason ? (getLang() === 'en' ? d.reason_en : d.reason_zh) : '');
  const state = (d) => h('span', { class: ['chip', `cs-${d.state}`], 'data-testid': 'gb-state', 'data-state': d.state },
    d.state === 'online' ? t('gb_online') : `${t('gb_offline')} · ${reason(d)}`);

  const table = (rows, cols, testid, onRow) => rows.length
    ? h('table', { class: 'table', 'data-testid': testid },
      h('thead', {}, h('tr', {}, cols.map(([k]) => h('th', { scope: 'col' }, k)))),
      h('tbody', {}, rows.map((r) => h('tr', { 'data-testid': `${testid}-row`, 'data-id': r.id, class: onRow && 'row-link', tabindex: onRow ? 0 : null,
      onclick: onRow && (() => onRow(r)), onkeydown: onRow && ((e) => { if (e.key === 'Enter') onRow(r); }) },
        cols.map(([, f]) => h('td', {}, f(r)))))))
    : h('p', { class: 'empty' }, t('none'));

  const ask = async (id, btn) => {
    btn.disabled = true;
    try {
      await post(`/api/gb28181/devices/${encodeURIComponent(id)}/catalog`, {});
      toast(t('gb_asked'), 'ok');
    } catch (e) {
      toast(errorText(e), 'error');
    }
    btn.disabled = false;
  };

  const showDevice = async (id) => {
    open = id;
    try {
      const d = await get(`/api/gb28181/devices/${encodeURIComponent(id)}`);
      if (!alive || open !== id) return;
      detailBox.hidden = false;
      fill(detailBox,
        h('div', { class: 'page-head' }, h('h2', {}, `${d.name || d.id} · ${t('gb_catalog')} (${d.catalog.length})`),
          perms.has('manage_cameras') && h('button', { class: 'btn', type: 'button', 'data-testid': 'gb-ask', onclick: (e) => ask(id, e.currentTarget) }, t('gb_ask'))),
        h('p', {}, [d.manufacturer, d.model, d.firmware].filter(Boolean).join(' · ')),
        table(d.catalog, [
          [t('gb_code'), (c) => h('code', {}, c.id)],
          [t('name'), (c) => c.name],
          [t('gb_type'), (c) => (c.type_code == null ? '' : (types[c.type_code] ? `${t(types[c.type_code])} (${c.type_code})` : String(c.type_code)))],
          [t('gb_parent'), (c) => c.parent_id || ''],
          [t('gb_civil'), (c) => c.civil_code || ''],
          [t('gb_status'), (c) => (c.online === false ? t('gb_off') : c.online ? t('gb_on') : '')],
        ], 'gb-catalog'));
    } catch (e) {
      toast(errorText(e), 'error');
    }
  };

  const refresh = async () => {
    try {
      const v = await get('/api/gb28181/devices');
      if (!alive) return;
      banner.hidden = true;
      const offline = v.devices - v.online;
      fill(cards,
        h('div', { class: 'card' }, h('div', { class: 'card-label' }, t('gb_devices')), h('div', { class: 'card-value', 'data-testid': 'gb-total' }, v.devices)),
        h('div', { class: ['card', 'rate-good'] }, h('div', { class: 'card-label' }, t('gb_online')), h('div', { class: 'card-value', 'data-testid': 'gb-online' }, v.online)),
        h('div', { class: ['card', offline ? 'rate-bad' : 'rate-good'] }, h('div', { class: 'card-label' }, t('gb_offline')), h('div', { class: 'card-value', 'data-testid': 'gb-offline' }, offline)),
        h('div', { class: 'card' }, h('div', { class: 'card-label' }, t('gb_port')), h('div', { class: 'card-value' }, v.sip_port)));
      fill(listBox, h('h2', {}, t('gb_devices')), table(v.items, [
        [t('gb_code'), (d) => h('code', {}, d.id)],
        [t('name'), (d) => d.name || ''],
        [t('gb_kind'), (d) => h('span', { 'data-testid': 'gb-kind' }, t(kinds[d.kind] || 'gb_kind_device'))],
        [t('gb_state'), state],
        [t('gb_transport'), (d) => d.transport.toUpperCase()],
        [t('gb_address'), (d) => (d.node ? `${d.address} → ${d.node}` : d.address)],
        [t('gb_keepalive'), (d) => (d.keepalive_ms ? fmtTime(d.keepalive_ms) : '')],
        [t('gb_channels'), (d) => (d.catalog_entries > d.channels ? `${d.channels} / ${d.catalog_entries}` : String(d.channels))],
        [t('gb_alarms'), (d) => (d.last_alarm
          ? `${d.alarms} · ${getLang() === 'zh' ? d.last_alarm.what_zh : d.last_alarm.what_en} ${fmtTime(d.last_alarm.time_ms)}`
          : String(d.alarms || 0))],
      ], 'gb-devices', (d) => showDevice(d.id)));
    } catch (e) {
      banner.textContent = e.status === 404 ? t('gb_not_configured') : errorText(e);
      banner.hidden = false;
    }
  };

  root.append(h('div', { class: 'page-head' }, h('h1', {}, t('gb_title')),
    h('button', { class: 'btn', type: 'button', onclick: refresh }, t('refresh'))), banner, cards, listBox, detailBox);
  refresh();
  const timer = setInterval(() => {
    if (!root.querySelector('table')?.contains(document.activeElement)) refresh();
  }, 5000);
  return () => {
    alive = false;
    clearInterval(timer);
  };
}
