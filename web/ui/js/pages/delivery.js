// 推送 Delivery: the outbox to the case system and the police stations — depth, failures, dead letters
// with a retry button.

import { get, post, qs, errorText } from '../api.js';
import { h, fill, fmtTime, toast } from '../dom.js';
import { t } from '../i18n.js';

export function mount(root, { navigate }) {
  let alive = true;
  const cards = h('div', { class: 'cards', 'data-testid': 'delivery-cards' });
  const pendingBox = h('section', { class: 'panel' });
  const deadBox = h('section', { class: 'panel' });
  const doneBox = h('section', { class: 'panel' });
  const banner = h('div', { class: 'banner banner-error', role: 'alert', hidden: true, 'data-testid': 'delivery-error' });

  const alertLink = (id) => h('a', { href: `#/alerts/${encodeURIComponent(id)}`, onclick: (e) => { e.preventDefault(); navigate('alerts', id); } }, h('code', {}, id));

  const table = (rows, cols, testid) => rows.length
    ? h('table', { class: 'table', 'data-testid': testid },
      h('thead', {}, h('tr', {}, cols.map(([k]) => h('th', { scope: 'col' }, k)))),
      h('tbody', {}, rows.map((r) => h('tr', { 'data-testid': `${testid}-row`, 'data-id': r.id }, cols.map(([, f]) => h('td', {}, f(r)))))))
    : h('p', { class: 'empty' }, t('none'));

  const retry = async (row, btn) => {
    btn.disabled = true;
    try {
      await post(`/api/delivery/${encodeURIComponent(row.id)}/retry`, {});
      toast(`#${row.id} ${t('retried')}`, 'ok');
      refresh();
    } catch (e) {
      toast(errorText(e), 'error');
      btn.disabled = false;
    }
  };

  const refresh = async () => {
    try {
      const [pending, dead, delivered] = await Promise.all([
        get(`/api/delivery/outbox${qs({ state: 'pending', limit: 500 })}`),
        get(`/api/delivery/dead${qs({ limit: 500 })}`),
        get(`/api/delivery/outbox${qs({ state: 'delivered', limit: 50 })}`),
      ]);
      if (!alive) return;
      banner.hidden = true;
      const failing = pending.filter((r) => r.attempts > 0 || r.last_error);
      fill(cards,
        h('div', { class: ['card', pending.length ? 'rate-warn' : 'rate-good'] }, h('div', { class: 'card-label' }, t('outbox_depth')), h('div', { class: 'card-value', 'data-testid': 'outbox-depth' }, pending.length)),
        h('div', { class: ['card', failing.length ? 'rate-bad' : 'rate-good'] }, h('div', { class: 'card-label' }, t('outbox_failing')), h('div', { class: 'card-value', 'data-testid': 'outbox-failing' }, failing.length)),
        h('div', { class: ['card', dead.length ? 'rate-bad' : 'rate-good'] }, h('div', { class: 'card-label' }, t('dead_letters')), h('div', { class: 'card-value', 'data-testid': 'dead-count' }, dead.length)));
      const base = [
        [t('row_id'), (r) => r.id],
        [t('alert_id'), (r) => alertLink(r.alert_id)],
        [t('sink'), (r) => r.sink],
        [t('url'), (r) => h('span', { class: 'url' }, r.url)],
        [t('attempts'), (r) => r.attempts],
      ];
      fill(pendingBox, h('h2', {}, `${t('pending')} (${pending.length})`), table(pending, [...base,
        [t('next_at'), (r) => fmtTime(r.next_at_ms)],
        [t('last_error'), (r) => h('span', { class: 'error-text' }, r.last_error || '')]], 'outbox'));
      fill(deadBox, h('h2', {}, `${t('dead_letters')} (${dead.length})`), table(dead, [...base,
        [t('last_error'), (r) => h('span', { class: 'error-text' }, r.last_error || '')],
        ['', (r) => h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'retry', onclick: (e) => retry(r, e.currentTarget) }, t('retry'))]], 'dead'));
      fill(doneBox, h('h2', {}, t('delivered')), table(delivered, [...base,
        [t('delivered_at'), (r) => fmtTime(r.delivered_at_ms)]], 'delivered'));
    } catch (e) {
      banner.textContent = errorText(e);
      banner.hidden = false;
    }
  };

  root.append(h('div', { class: 'page-head' }, h('h1', {}, t('delivery_title')),
    h('button', { class: 'btn', type: 'button', onclick: refresh }, t('refresh'))), banner, cards, deadBox, pendingBox, doneBox);
  refresh();
  // Repaint every 5 s, but not under a keyboard user's focus (the tables are rebuilt).
  const timer = setInterval(() => {
    if (!root.querySelector('table')?.contains(document.activeElement)) refresh();
  }, 5000);
  return () => {
    alive = false;
    clearInterval(timer);
  };
}
