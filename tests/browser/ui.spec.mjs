// Browser test of the command-hall UI, run by tests/browser.rs against the real service (camsim cameras,
// the real model, demo rules). Plain node + playwright-core + Debian chromium; no test runner.
//
// Env: QLY_UI_URL, QLY_UI_CAMSIM (camsim control API), QLY_UI_USERS (JSON: operator, dispatcher,
// other_dispatcher, engineer, admin → {username, password}), QLY_UI_SCREENSHOTS (folder),
// QLY_UI_ALERT_CAMERA, QLY_UI_RULES_CAMERA, QLY_UI_DOWN_CAMERA / QLY_UI_DOWN_SIM (camsim number).
// Exits non-zero with the failing step, the page's console and a screenshot on any failure.
// The administrator's steps also create a duty officer on the Users page, give it an API token
// (shown once), disable / enable it, change its role, revoke the token and find it all in the audit log.

import { chromium } from 'playwright-core';
import { mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

const URL = need('QLY_UI_URL');
const CAMSIM = need('QLY_UI_CAMSIM');
const USERS = JSON.parse(need('QLY_UI_USERS'));
const SHOTS = process.env.QLY_UI_SCREENSHOTS || 'screenshots';
const ALERT_CAMERA = process.env.QLY_UI_ALERT_CAMERA || 'cam-0001';
const RULES_CAMERA = process.env.QLY_UI_RULES_CAMERA || 'cam-0002';
const DOWN_CAMERA = process.env.QLY_UI_DOWN_CAMERA || 'cam-0005';
const DOWN_SIM = process.env.QLY_UI_DOWN_SIM || '0003';
// A GB/T 28181 device registered to the service (its page is checked only when set).
const GB_DEVICE = process.env.QLY_UI_GB_DEVICE || '';
const T0 = Date.now();

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set (tests/browser.rs sets it)`);
    process.exit(2);
  }
  return v;
}

function log(...args) {
  console.log(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(6)} s]`, ...args);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

mkdirSync(SHOTS, { recursive: true });
for (const f of readdirSync(SHOTS)) if (f.startsWith('FAILED-')) unlinkSync(join(SHOTS, f));
// A hung browser must not outlive the test: give up (and close it) well inside tests/browser.rs's limit.
setTimeout(async () => {
  console.error(`FAILED: the script ran longer than 420 s${current ? ` (page ${current.url()})` : ''}`);
  await browser.close().catch(() => {});
  process.exit(1);
}, 420000).unref();
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required', '--disable-dev-shm-usage'],
});
const problems = [];
const pages = [];
let current = null;
let authEnabled = true;

async function newPage(who) {
  const context = await browser.newContext({
    viewport: { width: 1600, height: 1000 },
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
  });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on('pageerror', (e) => problems.push(`[${who}] uncaught: ${e.stack || e.message}`));
  page.on('console', (m) => {
    const text = m.text();
    if (m.type() === 'error' && !/Failed to load resource/.test(text)) problems.push(`[${who}] console.error: ${text}`);
  });
  page.logs = [];
  page.on('console', (m) => page.logs.push(`${m.type()}: ${m.text()}`));
  pages.push(page);
  return page;
}

async function shot(page, name) {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path });
  log(`screenshot ${path}`);
}

async function step(name, fn) {
  const t = Date.now();
  log(`▶ ${name}`);
  try {
    await fn();
  } catch (e) {
    log(`✗ ${name}: ${e.message}`);
    if (current) {
      try {
        await shot(current, `FAILED-${name.replace(/[^A-Za-z0-9]+/g, '-')}`);
        console.log(`--- console of the page (${current.url()}):\n${current.logs.slice(-40).join('\n')}`);
      } catch {
        /* the page is gone */
      }
    }
    throw e;
  }
  log(`✓ ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
}

/** A request from the page (with its session cookie). */
async function pageFetch(page, path, init = {}) {
  return page.evaluate(async ([p, i]) => {
    const r = await fetch(p, { credentials: 'same-origin', ...i });
    return { status: r.status, body: await r.text() };
  }, [path, init]);
}

async function login(page, who) {
  const u = USERS[who];
  await page.goto(URL);
  await page.waitForSelector('body[data-ready="1"]');
  if (!authEnabled) return;
  await page.getByTestId('login-form').waitFor();
  await page.getByTestId('login-username').fill(u.username);
  await page.getByTestId('login-password').fill(u.password);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('user-name').waitFor();
  const role = await page.getByTestId('user-role').getAttribute('data-role');
  check(role === u.role, `${who}: the nav shows role ${role}, expected ${u.role}`);
  check((await page.getByTestId('user-name').textContent()).includes(u.display_name), `${who}: the nav shows the user's name`);
}

async function go(page, pageId) {
  await page.getByTestId(`nav-${pageId}`).click();
  await page.waitForFunction((id) => document.body.dataset.page === id, pageId);
}

async function camsim(path, body) {
  const r = await fetch(`${CAMSIM}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  check(r.ok, `camsim ${path}: ${r.status} ${await r.text()}`);
}

let alertId = null;

/** The account the administrator creates on the Users page. */
const DUTY = { username: `duty-wang-${Date.now().toString(36)}`, display_name: '值班员 王芳', password: `Duty-${Math.random().toString(36).slice(2, 10)}-pw` };

/** Users page, API tokens and the audit log, as the administrator sees them. */
async function adminSteps(admin) {
  const row = () => admin.locator(`[data-testid="user-row"][data-username="${DUTY.username}"]`);
  let token = null;
  /** What the service answers to the new token right now (status, and the user when 200). */
  const withToken = async () => {
    const r = await pageFetch(admin, '/api/auth/me', { headers: { Authorization: `Bearer ${token}` } });
    return { status: r.status, me: r.status === 200 ? JSON.parse(r.body) : null };
  };

  await step('admin: the users page lists the accounts and creates a duty officer', async () => {
    for (const id of ['users', 'audit']) check(await admin.getByTestId(`nav-${id}`).count() === 1, `admin has the ${id} page`);
    await go(admin, 'users');
    const opRow = admin.locator(`[data-testid="user-row"][data-username="${USERS.operator.username}"]`);
    await opRow.waitFor();
    check((await opRow.getByTestId('user-role-cell').textContent()) === '值班员', 'the operator row shows the role in Chinese');
    check((await opRow.getByTestId('user-display').textContent()) === USERS.operator.display_name, 'the operator row shows the display name');
    const station = admin.locator(`[data-testid="user-row"][data-username="${USERS.dispatcher.username}"]`);
    check((await station.getByTestId('user-area-cell').textContent()).includes('城关镇'), 'the station row shows its jurisdiction');
    const listed = await admin.getByTestId('user-row').evaluateAll((els) => els.map((e) => e.dataset.username));
    for (const u of Object.values(USERS)) check(listed.includes(u.username), `${u.username} is listed: ${listed.join(', ')}`);
    check(!(await admin.content()).includes('$argon2'), 'no password hash on the page');

    await admin.getByTestId('user-new').click();
    const dlg = admin.getByTestId('user-create-dialog');
    await dlg.waitFor();
    await dlg.getByTestId('new-username').fill(DUTY.username);
    await dlg.getByTestId('new-display').fill(DUTY.display_name);
    await dlg.getByTestId('new-role').selectOption('operator');
    check((await dlg.getByTestId('new-role').locator('option:checked').textContent()) === '值班员', 'the role select names the role in Chinese');
    // Too short a password: the server's message is shown at the password input.
    await dlg.getByTestId('new-password').fill('short');
    await dlg.getByTestId('new-password-again').fill('short');
    await dlg.getByTestId('new-submit').click();
    const err = dlg.locator('[data-testid="field-error"][data-error-field="password"]');
    await err.waitFor();
    check(/8/.test(await err.textContent()), `the password error says how long: ${await err.textContent()}`);
    check((await dlg.getByTestId('form-error').textContent()).includes('password'), 'the form error names the field');
    check(await dlg.getByTestId('new-password').getAttribute('aria-invalid') === 'true', 'the password input is marked invalid');
    await shot(admin, '14-user-create-error');
    await dlg.getByTestId('new-password').fill(DUTY.password);
    await dlg.getByTestId('new-password-again').fill(DUTY.password);
    await dlg.getByTestId('new-submit').click();
    await dlg.waitFor({ state: 'detached' });
    await row().waitFor();
    check((await row().getByTestId('user-role-cell').textContent()) === '值班员', 'the new user is a duty officer');
    check((await row().getByTestId('user-display').textContent()) === DUTY.display_name, 'the new user has the display name');
    check((await row().getByTestId('user-state').textContent()) === '正常', 'the new user is enabled');
    await shot(admin, '15-users');
  });

  await step('the new duty officer signs in with the initial password and has no admin pages', async () => {
    const duty = await newPage('new-duty-officer');
    await duty.goto(URL);
    await duty.waitForSelector('body[data-ready="1"]');
    await duty.getByTestId('login-username').fill(DUTY.username);
    await duty.getByTestId('login-password').fill(DUTY.password);
    await duty.getByTestId('login-submit').click();
    await duty.getByTestId('user-name').filter({ hasText: DUTY.display_name }).waitFor();
    check(await duty.getByTestId('user-role').getAttribute('data-role') === 'operator', 'the new user signs in as an operator');
    check(await duty.getByTestId('nav-alerts').count() === 1, 'the new duty officer has the alerts page');
    for (const id of ['users', 'audit']) check(await duty.getByTestId(`nav-${id}`).count() === 0, `the new duty officer must not have ${id}`);
    await duty.context().close();
  });

  await step('admin: an API token for the new user is shown once and works', async () => {
    await row().getByTestId('user-tokens').click();
    const dlg = admin.getByTestId('tokens-dialog');
    await dlg.getByTestId('tokens-empty').waitFor();
    await dlg.getByTestId('token-name').fill('vms-bridge');
    await dlg.getByTestId('token-create').click();
    const once = dlg.getByTestId('token-once');
    await once.waitFor();
    token = await once.getByTestId('token-value').inputValue();
    check(/^qly_[0-9a-f]{32,}$/.test(token), `the new token is shown: "${token}"`);
    const warning = await once.textContent();
    check(/只显示这一次/.test(warning) && /无法再次查看/.test(warning), `the token comes with a shown-once warning: ${warning}`);
    check(await once.getByTestId('token-copy').isVisible(), 'a copy button is offered');
    await dlg.locator('[data-testid="token-row"][data-name="vms-bridge"][data-revoked="0"]').waitFor();
    await shot(admin, '16-user-token-once');
    const r = await withToken();
    check(r.status === 200 && r.me.username === DUTY.username, `the token signs in as the new user: ${r.status}`);
    await dlg.getByTestId('dialog-close').click();
    await dlg.waitFor({ state: 'detached' });
    // Opened again: listed, but the token itself is nowhere on the page.
    await row().getByTestId('user-tokens').click();
    const again = admin.getByTestId('tokens-dialog');
    const tokenRow = again.locator('[data-testid="token-row"][data-name="vms-bridge"]');
    await tokenRow.waitFor();
    check((await tokenRow.getByTestId('token-state').textContent()) === '有效', 'the token is listed as active');
    check(!(await again.getByTestId('token-once').isVisible()), 'the shown-once box is gone');
    const shownAgain = await admin.evaluate((tok) => document.body.innerText.includes(tok)
      || [...document.querySelectorAll('input, textarea')].some((i) => i.value.includes(tok)), token);
    check(!shownAgain, 'the token is not shown a second time');
    await again.getByTestId('dialog-close').click();
  });

  await step('admin: disable and enable the new user, change its role', async () => {
    await row().getByTestId('user-disable').click();
    const confirm = admin.getByTestId('confirm');
    check((await confirm.getByTestId('confirm-text').textContent()).includes(DUTY.username), 'the confirmation names the user');
    await confirm.getByTestId('confirm-ok').click();
    await admin.locator(`[data-testid="user-row"][data-username="${DUTY.username}"][data-disabled="1"]`).waitFor();
    check((await row().getByTestId('user-state').textContent()) === '已停用', 'the row says disabled');
    check((await withToken()).status === 401, 'a disabled user\'s token stops working');
    await row().getByTestId('user-enable').click();
    await admin.locator(`[data-testid="user-row"][data-username="${DUTY.username}"][data-disabled="0"]`).waitFor();
    check((await row().getByTestId('user-state').textContent()) === '正常', 'the row says enabled again');
    check((await withToken()).status === 200, 'the token works again once the user is enabled');

    // A police-station role needs an area: the server says so, next to the area input.
    await row().getByTestId('user-edit').click();
    const dlg = admin.getByTestId('user-edit-dialog');
    await dlg.getByTestId('edit-role').selectOption('dispatcher');
    await dlg.getByTestId('edit-submit').click();
    const err = dlg.locator('[data-testid="field-error"][data-error-field="area"]');
    await err.waitFor();
    check(/area|辖区/.test(await dlg.getByTestId('form-error').textContent()), 'the form error names the area');
    await dlg.getByTestId('edit-role').selectOption('engineer');
    await dlg.getByTestId('edit-submit').click();
    await dlg.waitFor({ state: 'detached' });
    await admin.locator(`[data-testid="user-row"][data-username="${DUTY.username}"][data-role="engineer"]`).waitFor();
    check((await row().getByTestId('user-role-cell').textContent()) === '运维工程师', 'the row shows the new role');
    const r = await withToken();
    check(r.status === 200 && r.me.role === 'engineer', `the server has the new role: ${JSON.stringify(r.me)}`);
  });

  await step('admin: revoke the token after a confirmation', async () => {
    await row().getByTestId('user-tokens').click();
    const dlg = admin.getByTestId('tokens-dialog');
    const tokenRow = dlg.locator('[data-testid="token-row"][data-name="vms-bridge"]');
    await tokenRow.getByTestId('token-revoke').click();
    const confirm = admin.getByTestId('confirm');
    check((await confirm.getByTestId('confirm-text').textContent()).includes('vms-bridge'), 'the confirmation names the token');
    await confirm.getByTestId('confirm-ok').click();
    await dlg.locator('[data-testid="token-row"][data-name="vms-bridge"][data-revoked="1"]').waitFor();
    check((await tokenRow.getByTestId('token-state').textContent()) === '已吊销', 'the token is listed as revoked');
    check(await tokenRow.getByTestId('token-revoke').count() === 0, 'a revoked token offers no revoke button');
    check((await withToken()).status === 401, 'a revoked token is refused');
    await dlg.getByTestId('dialog-close').click();
  });

  await step('admin: the audit log shows the changes, newest first, with filters', async () => {
    await go(admin, 'audit');
    const created = admin.locator('[data-testid="audit-row"][data-action="POST /api/users"]').filter({ hasText: DUTY.username });
    await created.first().waitFor();
    check((await created.first().getByTestId('audit-action-cell').textContent()).includes('新建用户'), 'the creation is named in Chinese');
    check((await created.first().getByTestId('audit-user').textContent()).includes(USERS.admin.username), 'the creation names who did it');
    check((await created.first().getByTestId('audit-target').textContent()) === '/api/users', 'the creation names its target');
    check((await created.first().getByTestId('audit-detail').textContent()).includes('operator'), 'the detail has the role given');
    const actions = await admin.getByTestId('audit-row').evaluateAll((els) => els.map((e) => [Number(e.dataset.id), e.dataset.action]));
    for (let i = 1; i < actions.length; i++) check(actions[i - 1][0] > actions[i][0], `newest first: ${actions.map((a) => a[0]).join(',')}`);
    const order = (a) => actions.findIndex(([, x]) => x === a);
    for (const a of ['POST /api/users', 'POST /api/users/{username}/tokens', 'PUT /api/users/{username}', 'DELETE /api/users/{username}/tokens/{id}']) {
      check(order(a) >= 0, `the log has ${a}`);
    }
    check(order('DELETE /api/users/{username}/tokens/{id}') < order('POST /api/users'), 'the revocation is above the creation');
    await shot(admin, '17-audit');

    // Action filter (on the rows shown), then the user filter (asked of the server).
    await admin.getByTestId('audit-action').selectOption('PUT /api/users/{username}');
    await admin.waitForFunction(() => [...document.querySelectorAll('[data-testid="audit-row"]')].every((r) => r.dataset.action === 'PUT /api/users/{username}'));
    check(await admin.getByTestId('audit-row').count() >= 3, 'disable, enable and role change are three changes');
    await admin.getByTestId('audit-action').selectOption('');
    // The new user's own sign-in, and nothing the administrator did.
    await admin.getByTestId('audit-user-filter').fill(DUTY.username);
    await admin.waitForFunction((u) => {
      const rows = [...document.querySelectorAll('[data-testid="audit-row"]')];
      return rows.length > 0 && rows.every((r) => r.dataset.user === u);
    }, DUTY.username);
    await admin.locator('[data-testid="audit-row"][data-action="login"]').first().waitFor();
    check((await admin.locator('[data-testid="audit-row"][data-action="login"]').first().getByTestId('audit-action-cell').textContent()).includes('登录'), 'a sign-in is named in Chinese');
    await admin.getByTestId('audit-user-filter').fill('');
    await admin.getByTestId('audit-period').selectOption('1h');
    await created.first().waitFor();
    await admin.getByTestId('audit-limit').selectOption('50');
    await created.first().waitFor();
  });
}

try {
  const op = await newPage('operator');
  current = op;

  await step('login page and a wrong password', async () => {
    await op.goto(URL);
    await op.waitForSelector('body[data-ready="1"]');
    const me = await pageFetch(op, '/api/auth/me');
    if (me.status === 404) {
      authEnabled = false;
      log('SKIP: this server has no /api/auth (login, roles and jurisdictions are not tested)');
      return;
    }
    await op.getByTestId('login-form').waitFor();
    await shot(op, '01-login');
    await op.getByTestId('login-username').fill(USERS.operator.username);
    await op.getByTestId('login-password').fill('not-the-password');
    await op.getByTestId('login-submit').click();
    await op.getByTestId('login-error').filter({ hasText: /错误|wrong/ }).waitFor();
  });

  await step('operator logs in and sees only the pages of the role', async () => {
    await login(op, 'operator');
    if (!authEnabled) return;
    for (const id of ['alerts', 'cameras', 'rates']) check(await op.getByTestId(`nav-${id}`).count() === 1, `operator has ${id}`);
    for (const id of ['delivery', 'station', 'users', 'audit']) check(await op.getByTestId(`nav-${id}`).count() === 0, `operator must not have ${id}`);
    await op.goto(`${URL}/#/users`);
    await op.waitForFunction(() => location.hash === '#/alerts' && document.body.dataset.page === 'alerts');
    check(await op.getByTestId('users-table').count() === 0, 'an operator who types #/users gets no user list');
    await op.waitForFunction(() => document.body.dataset.page === 'alerts');
  });

  await step('an intrusion alert arrives live over the feed', async () => {
    if (!authEnabled) await go(op, 'alerts');
    await op.getByTestId('feed-status').and(op.locator('[data-state="live"]')).waitFor({ timeout: 30000 });
    const row = op.locator(`[data-testid="alert-row"][data-live="1"][data-type="intrusion"][data-camera="${ALERT_CAMERA}"][data-state="new"]`).first();
    await row.waitFor({ timeout: 150000 });
    alertId = await row.getAttribute('data-id');
    log(`live alert ${alertId}`);
    // One row per alert for the steps below (the flood folds into its incident otherwise).
    await op.getByTestId('filter-group').selectOption('0');
    await op.locator(`[data-testid="alert-row"][data-id="${alertId}"]`).waitFor();
    const type = await row.getByTestId('alert-type').textContent();
    check(type.includes('区域入侵') && type.includes('Intrusion'), `type shows zh and en: ${type}`);
    check((await row.getByTestId('alert-area').textContent()).includes('城关镇'), 'the row names the place');
    await op.waitForFunction((id) => {
      const img = document.querySelector(`[data-testid="alert-row"][data-id="${id}"] img`);
      return img && img.complete && img.naturalWidth > 0;
    }, alertId, { timeout: 20000 });
    check(Number(await op.evaluate(() => document.body.dataset.beeps || 0)) >= 1, 'a high-severity alert beeps');
    await shot(op, '02-alerts');
  });

  await step('the intrusion flood shows as one incident with its count', async () => {
    // The camera raises an intrusion every few seconds (1 s cooldown): they fold into one row.
    await op.getByTestId('filter-group').selectOption('1');
    const chip = op.locator(`[data-testid="alert-row"][data-type="intrusion"][data-camera="${ALERT_CAMERA}"] [data-testid="alert-incident-count"]`).first();
    await chip.waitFor({ timeout: 90000 });
    const lead = chip.locator('xpath=ancestor::article[1]');
    const incident = await lead.getAttribute('data-incident');
    const text = await chip.textContent();
    const n = Number(text.match(/(\d+)/)[1]);
    log(`incident ${incident}: ${text}`);
    check(n >= 2, 'the incident counts at least two alerts');
    check(await op.locator(`[data-testid="alert-row"][data-incident="${incident}"]`).count() === 1, 'one row for the whole incident');
    const api = await op.evaluate(async (id) => (await fetch(`/api/incidents/${encodeURIComponent(id)}`)).json(), incident);
    check(api.count >= n && api.alerts.length === api.count, `the incident's card and its alerts agree (${api.count})`);
    await shot(op, '02b-incident');
    // The steps below handle one alert: show every alert again.
    await op.getByTestId('filter-group').selectOption('0');
    await op.locator(`[data-testid="alert-row"][data-id="${alertId}"]`).waitFor();
  });

  await step('acknowledge from the row, dispatch with a note from the detail', async () => {
    const row = () => op.locator(`[data-testid="alert-row"][data-id="${alertId}"]`);
    await row().getByTestId('act-acknowledged').click();
    await op.locator(`[data-testid="alert-row"][data-id="${alertId}"][data-state="acknowledged"]`).waitFor();
    check(await row().getByTestId('act-acknowledged').count() === 0, 'acknowledge is no longer offered');
    await row().click();
    const dlg = op.getByTestId('alert-detail');
    await dlg.waitFor();
    await dlg.getByTestId('alert-note').fill('已通知城关派出所出警');
    await dlg.getByTestId('act-dispatched').click();
    await dlg.locator('[data-testid="alert-state"][data-state="dispatched"]').waitFor();
    await dlg.locator('[data-testid="alert-event"][data-to="dispatched"]', { hasText: '已通知城关派出所出警' }).waitFor();
    check(await dlg.locator('[data-testid="alert-event"]').count() >= 3, 'history: created, acknowledged, dispatched');
    await dlg.getByTestId('alert-incident').filter({ hasText: /同一事件 ×\d+|incident ×\d+/ }).waitFor();
    await op.waitForFunction(() => {
      const img = document.querySelector('[data-testid="alert-detail"] [data-testid="alert-snapshot"]');
      return img && img.complete && img.naturalWidth > 0;
    });
    await shot(op, '03-alert-detail');
    await dlg.getByTestId('dialog-close').click();
    await op.locator(`[data-testid="alert-row"][data-id="${alertId}"][data-state="dispatched"]`).waitFor();
  });

  await step('the alert detail plays the evidence clip', async () => {
    // The clip is written `post` seconds after the alert's frame; the API says when.
    // Opened at once, the detail says the clip is recording and shows the player once it is written
    // (`post` seconds after the alert's frame).
    await op.locator(`[data-testid="alert-row"][data-id="${alertId}"]`).click();
    const dlg = op.getByTestId('alert-detail');
    const video = dlg.getByTestId('alert-clip');
    await video.waitFor({ timeout: 60000 });
    await op.evaluate(() => {
      const v = document.querySelector('[data-testid="alert-detail"] [data-testid="alert-clip"]');
      v.muted = true;
      return v.play();
    });
    await op.waitForFunction(() => {
      const v = document.querySelector('[data-testid="alert-detail"] [data-testid="alert-clip"]');
      return v && v.currentTime > 1 && v.videoWidth > 0;
    }, null, { timeout: 20000 });
    const size = await op.evaluate(() => {
      const v = document.querySelector('[data-testid="alert-detail"] [data-testid="alert-clip"]');
      return { w: v.videoWidth, h: v.videoHeight, d: v.duration, t: v.currentTime };
    });
    log(`clip plays: ${size.w}×${size.h}, ${size.d.toFixed(1)} s, at ${size.t.toFixed(1)} s`);
    // At least `post` (4 s); `pre` is shorter when the alert came soon after the camera connected.
    check(size.w > 0 && size.h > 0 && size.d >= 4, `the clip is a real video to post after the alert: ${JSON.stringify(size)}`);
    await shot(op, '03b-alert-clip');
    await dlg.getByTestId('dialog-close').click();
  });

  await step('filters: area and state', async () => {
    await op.getByTestId('filter-area').selectOption('示范县/桃源镇');
    await op.getByTestId('alert-empty').waitFor();
    await op.getByTestId('filter-area').selectOption('示范县/城关镇');
    await op.getByTestId('filter-state').selectOption('dispatched');
    await op.locator(`[data-testid="alert-row"][data-id="${alertId}"]`).waitFor();
    check(await op.locator('[data-testid="alert-row"]:not([data-state="dispatched"])').count() === 0, 'the state filter shows only dispatched alerts');
    await op.getByTestId('filter-state').selectOption('');
    await op.getByTestId('filter-area').selectOption('');
  });

  if (authEnabled) {
    await step('the dispatcher of the jurisdiction sees it and handles it', async () => {
      const cg = await newPage('dispatcher');
      current = cg;
      await login(cg, 'dispatcher');
      await cg.waitForFunction(() => document.body.dataset.page === 'station');
      check(await cg.getByTestId('nav-alerts').count() === 0, 'a dispatcher has no operator feed');
      for (const id of ['users', 'audit']) check(await cg.getByTestId(`nav-${id}`).count() === 0, `a dispatcher must not have ${id}`);
      const row = cg.locator(`[data-testid="station-active"] [data-testid="alert-row"][data-id="${alertId}"]`);
      await row.waitFor({ timeout: 20000 });
      await shot(cg, '04-station');
      await row.getByTestId('act-accepted').click();
      await cg.locator(`[data-testid="alert-row"][data-id="${alertId}"][data-state="accepted"]`).waitFor();
      await cg.locator(`[data-testid="alert-row"][data-id="${alertId}"]`).getByTestId('act-arrived').click();
      await cg.locator(`[data-testid="alert-row"][data-id="${alertId}"][data-state="arrived"]`).waitFor();
      await cg.locator(`[data-testid="alert-row"][data-id="${alertId}"]`).getByTestId('act-resolved').click();
      await cg.locator(`[data-testid="station-done"] [data-testid="alert-row"][data-id="${alertId}"][data-state="resolved"]`).waitFor();
      // The operator's feed follows (alert_update over the WebSocket).
      await op.locator(`[data-testid="alert-row"][data-id="${alertId}"][data-state="resolved"]`).waitFor();
    });

    await step('the dispatcher of another jurisdiction does not see it', async () => {
      const ty = await newPage('other_dispatcher');
      current = ty;
      await login(ty, 'other_dispatcher');
      await ty.waitForFunction(() => document.body.dataset.page === 'station');
      await ty.locator('[data-testid="station-done"] .empty, [data-testid="station-done"] [data-testid="alert-row"]').first().waitFor();
      check(await ty.locator(`[data-testid="alert-row"][data-id="${alertId}"]`).count() === 0, 'the other station lists the alert');
      const list = await pageFetch(ty, '/api/alerts?limit=1000');
      check(list.status === 200, `GET /api/alerts as the other station: ${list.status} ${list.body}`);
      check(!JSON.parse(list.body).some((a) => a.id === alertId), 'the API gives the other station the alert');
      const one = await pageFetch(ty, `/api/alerts/${alertId}`);
      check(one.status === 403 || one.status === 404, `GET /api/alerts/{id} as the other station: ${one.status}`);
      await shot(ty, '05-station-other');
    });
  }

  let rateBefore = null;
  await step('camera wall and online rate with every camera online', async () => {
    current = op;
    await go(op, 'rates');
    await op.waitForFunction(() => {
      const v = document.querySelector('[data-testid="online-rate"]');
      return v && v.dataset.value !== '' && Number(v.dataset.value) === 1;
    }, null, { timeout: 60000 });
    rateBefore = Number(await op.getByTestId('online-rate').getAttribute('data-value'));
    await go(op, 'cameras');
    await op.locator(`[data-testid="camera-tile"][data-id="${DOWN_CAMERA}"][data-state="online"]`).waitFor({ timeout: 30000 });
  });

  await step('a camera taken down turns offline on the wall and the online rate drops', async () => {
    await camsim(`/cameras/${DOWN_SIM}/fault`, { kind: 'down' });
    const tile = op.locator(`[data-testid="camera-tile"][data-id="${DOWN_CAMERA}"][data-state="offline"]`);
    await tile.waitFor({ timeout: 60000 });
    const reason = (await tile.getByTestId('camera-reason').textContent()) || '';
    check(/[\u4e00-\u9fff]/.test(reason), `the reason is in Chinese: "${reason}"`);
    await op.waitForFunction(() => {
      const imgs = [...document.querySelectorAll('[data-testid="camera-tile"][data-state="online"] img')];
      return imgs.some((i) => i.complete && i.naturalWidth > 0);
    }, null, { timeout: 30000 });
    await shot(op, '06-cameras');
    await tile.click();
    const dlg = op.getByTestId('camera-detail');
    await dlg.getByTestId('camera-history').waitFor();
    check(await dlg.locator('tbody tr').count() >= 1, 'the history lists transitions');
    await shot(op, '07-camera-history');
    await dlg.getByTestId('dialog-close').click();
    await go(op, 'rates');
    await op.waitForFunction((before) => {
      const v = document.querySelector('[data-testid="online-rate"]');
      return v && v.dataset.value !== '' && Number(v.dataset.value) < before;
    }, rateBefore, { timeout: 20000 });
    log(`online rate ${rateBefore} → ${await op.getByTestId('online-rate').getAttribute('data-value')}`);
    await op.getByTestId('area-row').first().waitFor();
    await op.getByTestId('daily-chart').waitFor();
    check((await op.getByTestId('export-csv').getAttribute('href')).includes('format=csv'), 'the export link asks for CSV');
    await shot(op, '08-rates');
    await camsim(`/cameras/${DOWN_SIM}/fault`, { kind: 'restore' });
  });

  const admin = authEnabled ? await newPage('admin') : op;
  current = admin;
  await step('admin: a rule without its required key is refused, the message next to its input', async () => {
    if (authEnabled) await login(admin, 'admin');
    await go(admin, 'rules');
    await admin.getByTestId('rules-camera').selectOption(RULES_CAMERA);
    await admin.getByTestId('rule-add').click();
    const rule = admin.getByTestId('rule-item').last();
    await rule.getByTestId('rule-kind').selectOption('loitering');
    await admin.getByTestId('rules-save').click();
    const err = admin.getByTestId('rule-item').last().getByTestId('field-error').first();
    await err.waitFor();
    log(`field error: ${await err.getAttribute('data-error-field')}: ${await err.textContent()}`);
    await admin.getByTestId('rules-error').waitFor();
    await shot(admin, '09-rules-error');
    await admin.getByTestId('rule-item').last().getByTestId('rule-delete').click();
  });

  await step('admin draws a zone, saves it, and it is there after a reload', async () => {
    const canvas = admin.getByTestId('rules-canvas');
    const box = await canvas.boundingBox();
    const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
    await admin.getByTestId('tool-polygon').click();
    for (const [x, y] of [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6]]) await admin.mouse.click(...at(x, y));
    await admin.mouse.dblclick(...at(0.2, 0.6));
    const zone = admin.getByTestId('zone-item').last();
    await zone.waitFor();
    await zone.getByTestId('zone-name').fill('测试禁区');
    await zone.getByTestId('zone-name').press('Tab');
    await zone.getByTestId('zone-add-rule').click();
    await admin.getByTestId('rules-save').click();
    await admin.getByTestId('rules-status').filter({ hasText: /已保存|Saved/ }).waitFor();
    await admin.reload();
    await admin.waitForSelector('body[data-ready="1"]');
    await admin.getByTestId('rules-camera').selectOption(RULES_CAMERA);
    const saved = admin.locator('[data-testid="zone-item"]').filter({ has: admin.locator('[data-testid="zone-name"]') });
    await saved.first().waitFor();
    const names = await admin.getByTestId('zone-name').evaluateAll((els) => els.map((e) => e.value));
    check(names.includes('测试禁区'), `zone names after reload: ${names.join(', ')}`);
    await admin.locator('[data-testid="shape-zone"]').first().waitFor();
    const doc = JSON.parse((await pageFetch(admin, '/api/rules')).body);
    const z = doc.zones.find((x) => x.camera === RULES_CAMERA && x.name === '测试禁区');
    check(z && z.polygon.length === 4, `the saved zone has 4 points: ${JSON.stringify(z)}`);
    check(Math.abs(z.polygon[0][0] - 0.2) < 0.02 && Math.abs(z.polygon[2][1] - 0.6) < 0.02, `points are normalised: ${JSON.stringify(z.polygon)}`);
    check(doc.rules.some((r) => r.camera === RULES_CAMERA && r.zone === z.id && r.kind === 'intrusion'), 'the rule on the zone is saved');
  });

  await step('admin draws a tripwire with two clicks and saves it', async () => {
    const box = await admin.getByTestId('rules-canvas').boundingBox();
    const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
    await admin.getByTestId('tool-line').click();
    await admin.mouse.click(...at(0.1, 0.8));
    await admin.mouse.click(...at(0.9, 0.8));
    await admin.locator('[data-testid="shape-wire"]').first().waitFor();
    const rule = admin.getByTestId('rule-item').filter({ has: admin.getByTestId('rule-line') }).last();
    check(await rule.getByTestId('rule-kind').inputValue() === 'tripwire', 'a drawn line is a tripwire rule');
    await rule.getByTestId('rule-name').fill('测试绊线');
    await rule.getByTestId('rule-name').press('Tab');
    await admin.getByTestId('rules-save').click();
    await admin.getByTestId('rules-status').filter({ hasText: /已保存|Saved/ }).waitFor();
    const doc = JSON.parse((await pageFetch(admin, '/api/rules')).body);
    const r = doc.rules.find((x) => x.camera === RULES_CAMERA && x.name === '测试绊线');
    check(r && r.kind === 'tripwire' && r.line.length === 2 && Math.abs(r.line[1][0] - 0.9) < 0.02, `saved tripwire: ${JSON.stringify(r)}`);
    await shot(admin, '10-rules');
  });

  await step('delivery page', async () => {
    if (authEnabled) {
      check(await admin.getByTestId('nav-delivery').count() === 1, 'admin has the delivery page');
    }
    await go(admin, 'delivery');
    await admin.getByTestId('outbox-depth').waitFor();
    await shot(admin, '11-delivery');
  });

  if (GB_DEVICE) {
    await step('GB/T 28181 devices page', async () => {
      await go(admin, 'gb');
      await admin.getByTestId('gb-online').filter({ hasText: '1' }).waitFor();
      const row = admin.getByTestId('gb-devices-row').filter({ hasText: GB_DEVICE });
      await row.waitFor();
      check((await row.getByTestId('gb-state').getAttribute('data-state')) === 'online', 'the registered device is online');
      check(/在线/.test(await row.getByTestId('gb-state').textContent()), 'its state reads in Chinese');
      check(/UDP/.test(await row.textContent()), 'it says the transport');
      await row.click();
      await admin.getByTestId('gb-detail').filter({ hasText: /目录/ }).waitFor();
      await shot(admin, '12-gb-devices');
    });
  }

  if (authEnabled) {
    await adminSteps(admin);
  }

  await step('English is switchable and remembered', async () => {
    await admin.getByTestId('lang-switch').click();
    await admin.getByTestId('nav-delivery').filter({ hasText: 'Delivery' }).waitFor();
    if (authEnabled) {
      await admin.getByTestId('nav-users').filter({ hasText: 'Users' }).waitFor();
      await admin.getByTestId('nav-audit').filter({ hasText: 'Audit' }).waitFor();
    }
    await admin.reload();
    await admin.getByTestId('nav-alerts').filter({ hasText: 'Alerts' }).waitFor();
    await go(admin, 'alerts');
    await admin.getByTestId('alert-row').first().waitFor();
    await shot(admin, '12-alerts-english');
    await admin.getByTestId('lang-switch').click();
    await admin.getByTestId('nav-alerts').filter({ hasText: '告警' }).waitFor();
  });

  if (authEnabled) {
    await step('logout returns to the login page', async () => {
      await admin.getByTestId('logout').click();
      await admin.getByTestId('login-form').waitFor();
      const me = await pageFetch(admin, '/api/auth/me');
      check(me.status === 401, `after logout /api/auth/me is ${me.status}`);
    });

    // Last, because the limiter then refuses every login from this address for minutes.
    await step('too many wrong passwords: told to retry in N s', async () => {
      const err = admin.getByTestId('login-error');
      for (let i = 0; i < 10; i++) {
        await admin.getByTestId('login-username').fill('nobody');
        await admin.getByTestId('login-password').fill(`wrong-${i}`);
        await admin.getByTestId('login-submit').click();
        await err.filter({ hasText: /错误|秒后重试/ }).waitFor();
        if (/秒后重试/.test(await err.textContent())) break;
      }
      const text = await err.textContent();
      check(/请 \d+ 秒后重试/.test(text), `the 429 answer is shown as a countdown: "${text}"`);
      check(await admin.getByTestId('login-submit').isDisabled(), 'the button waits for the countdown');
      await shot(admin, '13-login-too-many');
    });
  }

  check(problems.length === 0, `the pages logged errors:\n${problems.join('\n')}`);
  log(`all steps passed${authEnabled ? '' : ' (auth steps skipped)'}`);
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`FAILED: ${e.stack || e.message}`);
  if (problems.length) console.error(`page errors:\n${problems.join('\n')}`);
  await browser.close().catch(() => {});
  process.exit(1);
}
