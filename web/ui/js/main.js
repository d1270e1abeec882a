// The command-hall single-page app: session, navigation by role, hash routes, language switch.

import { ApiError, get, post, setUnauthorizedHandler, errorText } from './api.js';
import { h, fill, fmtClock, fmtTime, toast } from './dom.js';
import { t, getLang, setLang, label } from './i18n.js';
import { startFeed, stopFeed, onFeed, onFeedStatus, feedStatus } from './feed.js';
import { beep, unlockSound, soundEnabled, setSoundEnabled } from './sound.js';
import * as login from './pages/login.js';
import * as alerts from './pages/alerts.js';
import * as cameras from './pages/cameras.js';
import * as rates from './pages/rates.js';
import * as rules from './pages/rules.js';
import * as station from './pages/station.js';
import * as delivery from './pages/delivery.js';
import * as users from './pages/users.js';
import * as audit from './pages/audit.js';
import * as gb from './pages/gb.js';

/** What each role may do (src/auth/mod.rs `allows`), for a server whose `me` has no `permissions`. */
const ROLE_PERMISSIONS = {
  operator: ['view_alerts', 'handle_alerts', 'police_actions', 'view_cameras', 'view_health', 'view_rules', 'view_system'],
  dispatcher: ['view_alerts', 'police_actions', 'view_cameras', 'view_health', 'view_system'],
  engineer: ['view_alerts', 'view_cameras', 'manage_cameras', 'view_health', 'manage_delivery', 'view_rules', 'view_system', 'metrics'],
  admin: ['view_alerts', 'handle_alerts', 'police_actions', 'view_cameras', 'manage_cameras', 'view_health', 'manage_delivery',
    'view_rules', 'manage_rules', 'manage_users', 'view_system', 'metrics', 'view_audit'],
};

/** Pages, in nav order, with who may use them (the server enforces the same permissions). */
const PAGES = [
  { id: 'alerts', mod: alerts, may: (p, u) => p.has('view_alerts') && u.role !== 'dispatcher' },
  { id: 'station', mod: station, may: (p, u) => p.has('police_actions') && (u.role === 'dispatcher' || u.role === 'admin') },
  { id: 'cameras', mod: cameras, may: (p) => p.has('view_cameras') },
  { id: 'rates', mod: rates, may: (p) => p.has('view_health') },
  { id: 'gb', mod: gb, may: (p) => p.has('view_health') && session.gb },
  { id: 'rules', mod: rules, may: (p) => p.has('view_rules') },
  { id: 'delivery', mod: delivery, may: (p) => p.has('manage_delivery') },
  { id: 'users', mod: users, may: (p) => p.has('manage_users') },
  { id: 'audit', mod: audit, may: (p) => p.has('view_audit') },
];

/** The user's permissions as a Set. */
function permissions(user) {
  return new Set(Array.isArray(user.permissions) ? user.permissions : ROLE_PERMISSIONS[user.role] || []);
}

const session = { user: null, noAuth: false };
let cleanup = null;
let afterLogin = null;
let loginNotice = null;
const app = document.getElementById('app');

function pagesFor(user) {
  if (!user) return [];
  const perms = permissions(user);
  return PAGES.filter((p) => p.may(perms, user));
}

function route() {
  const m = location.hash.match(/^#\/([a-z]+)(?:\/(.*))?$/);
  return m ? { page: m[1], arg: m[2] ? decodeURIComponent(m[2]) : null } : { page: '', arg: null };
}

/** Goes to `#/page[/arg]`. */
export function navigate(page, arg) {
  const hash = `#/${page}${arg ? `/${encodeURIComponent(arg)}` : ''}`;
  if (location.hash === hash) render();
  else location.hash = hash;
}

function header(user, pages, current) {
  const status = h('span', { class: 'feed-status', 'data-testid': 'feed-status', role: 'status' });
  const paintStatus = (st) => {
    status.dataset.state = st;
    status.textContent = t(st === 'live' ? 'feed_live' : st === 'connecting' ? 'feed_connecting' : 'feed_down');
  };
  paintStatus(feedStatus());
  const clock = h('span', { class: 'clock', 'aria-hidden': 'true' }, fmtClock(Date.now()));
  const soundBtn = h('button', {
    class: 'btn btn-ghost', type: 'button', 'data-testid': 'sound-toggle', 'aria-pressed': String(soundEnabled()),
    onclick: () => {
      setSoundEnabled(!soundEnabled());
      soundBtn.textContent = t(soundEnabled() ? 'sound_on' : 'sound_off');
      soundBtn.setAttribute('aria-pressed', String(soundEnabled()));
    },
  }, t(soundEnabled() ? 'sound_on' : 'sound_off'));
  const langBtn = h('button', {
    class: 'btn btn-ghost', type: 'button', 'data-testid': 'lang-switch', 'aria-label': t('lang_switch_label'),
    lang: getLang() === 'en' ? 'zh-CN' : 'en',
    onclick: () => {
      setLang(getLang() === 'en' ? 'zh' : 'en');
      render();
    },
  }, t('lang_switch'));
  const el = h('header', { class: 'topbar' },
    h('a', { class: 'skip', href: '#page' , onclick: (e) => { e.preventDefault(); document.getElementById('page')?.focus(); } }, getLang() === 'en' ? 'Skip to content' : '跳到内容'),
    h('div', { class: 'brand' }, h('img', { src: '/ui/favicon.svg', alt: '', width: 28, height: 28 }),
      h('span', { class: 'brand-name' }, t('app_name')), h('span', { class: 'brand-sub' }, t('app_sub'))),
    user && h('nav', { class: 'nav', 'aria-label': getLang() === 'en' ? 'Pages' : '页面' },
      pages.map((p) => h('a', {
        href: `#/${p.id}`, class: ['nav-link', p.id === current && 'active'], 'data-testid': `nav-${p.id}`,
        'aria-current': p.id === current ? 'page' : null,
      }, t(`nav_${p.id}`)))),
    h('div', { class: 'topbar-right' },
      user && status, clock, user && soundBtn, langBtn,
      user && h('span', { class: 'user', 'data-testid': 'user' },
        h('span', { class: 'user-name', 'data-testid': 'user-name' }, user.display_name || user.username),
        h('span', { class: 'user-role', 'data-testid': 'user-role', 'data-role': user.role }, label('role_', user.role)),
        user.area && h('span', { class: 'user-area' }, user.area)),
      user && !session.noAuth && h('button', { class: 'btn btn-ghost', type: 'button', 'data-testid': 'logout', onclick: logout }, t('logout'))),
  );
  const timer = setInterval(() => {
    clock.textContent = fmtClock(Date.now());
  }, 1000);
  const off = onFeedStatus(paintStatus);
  // The alert store failing is everyone's business: a banner under the top bar while it lasts.
  const banner = h('div', { class: 'banner banner-error store-banner', role: 'alert', 'data-testid': 'store-failing', hidden: true });
  let storeTimer = null;
  const checkStore = async () => {
    try {
      const st = (await get('/api/system', { quiet401: true })).store;
      const failing = st && st.state === 'failing';
      banner.hidden = !failing;
      if (failing) banner.textContent = t('store_failing', fmtTime(st.since_ms), st.waiting, st.error || '');
    } catch {
      /* the feed status shows a lost connection */
    }
  };
  if (user) {
    checkStore();
    storeTimer = setInterval(checkStore, 5000);
  }
  return { el, banner, stop: () => { clearInterval(timer); clearInterval(storeTimer); off(); } };
}

let headerStop = null;
function render() {
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
    cleanup = null;
  }
  if (headerStop) headerStop();
  headerStop = null;
  document.title = `${t('app_name')} · ${t('app_sub')}`;
  const { page, arg } = route();
  const user = session.user;
  const main = h('main', { id: 'page', class: 'page', tabindex: '-1' });
  if (!user) {
    const hd = header(null, [], '');
    headerStop = hd.stop;
    fill(app, hd.el, main);
    if (page && page !== 'login') afterLogin = location.hash;
    cleanup = login.mount(main, { onLogin, notice: loginNotice });
    loginNotice = null;
    return;
  }
  const pages = pagesFor(user);
  const target = pages.find((p) => p.id === page) || pages[0];
  if (!target) {
    fill(app, header(user, [], '').el, h('main', { class: 'page' }, h('p', { class: 'banner banner-error' }, t('err_forbidden'))));
    return;
  }
  if (target.id !== page) {
    history.replaceState(null, '', `#/${target.id}`);
  }
  const hd = header(user, pages, target.id);
  headerStop = hd.stop;
  const parts = [hd.el, hd.banner];
  if (session.noAuth) parts.push(h('div', { class: 'banner banner-warn', 'data-testid': 'no-auth' }, t('no_auth')));
  parts.push(main);
  fill(app, ...parts);
  document.body.dataset.page = target.id;
  cleanup = target.mod.mount(main, { user, perms: permissions(user), arg, navigate, noAuth: session.noAuth });
}

/** Whether this node takes GB/T 28181 devices (its page is shown only then). */
async function checkGb() {
  try {
    session.gb = Boolean((await get('/api/system', { quiet401: true })).gb28181);
  } catch {
    session.gb = false;
  }
}

async function onLogin(user) {
  session.user = user;
  session.noAuth = false;
  try {
    // The login answer has no permissions; `me` has.
    session.user = { ...user, ...(await get('/api/auth/me', { quiet401: true })) };
  } catch {
    /* keep the login answer; permissions follow from the role */
  }
  unlockSound();
  await checkGb();
  await startFeed();
  const back = afterLogin;
  afterLogin = null;
  if (back && back !== location.hash) location.hash = back;
  else render();
}

async function logout() {
  try {
    await post('/api/auth/logout', {}, { quiet401: true });
  } catch (e) {
    if (!(e instanceof ApiError && (e.status === 401 || e.status === 404))) toast(errorText(e), 'error');
  }
  stopFeed();
  session.user = null;
  location.hash = '#/login';
  render();
}

setUnauthorizedHandler(() => {
  if (!session.user || session.noAuth) return;
  stopFeed();
  session.user = null;
  loginNotice = t('session_expired');
  afterLogin = location.hash;
  location.hash = '#/login';
  render();
});

// Urgent alerts anywhere in the app: a beep and a flash of the top bar (the alert page also flashes rows).
onFeed((msg) => {
  if (msg.kind !== 'alert' || !session.user || session.user.role === 'dispatcher') return;
  if (msg.severity === 'high' || msg.severity === 'critical') {
    beep(msg.severity);
    document.body.classList.remove('flash-urgent');
    void document.body.offsetWidth;
    document.body.classList.add('flash-urgent');
    setTimeout(() => document.body.classList.remove('flash-urgent'), 3000);
  }
});

document.addEventListener('pointerdown', unlockSound, { once: true });
document.addEventListener('keydown', unlockSound, { once: true });
window.addEventListener('hashchange', render);

async function boot() {
  setLang(getLang());
  try {
    const me = await get('/api/auth/me', { quiet401: true });
    session.user = me && me.user ? me.user : me;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      // No authentication on this server yet: run as an administrator so every page can be used.
      session.user = { username: 'dev', display_name: getLang() === 'en' ? 'Developer' : '开发模式', role: 'admin', area: null };
      session.noAuth = true;
    } else if (!(e instanceof ApiError && e.status === 401)) {
      loginNotice = errorText(e);
    }
  }
  if (session.user) {
    await checkGb();
    await startFeed();
  }
  render();
  document.body.dataset.ready = '1';
}

boot();
