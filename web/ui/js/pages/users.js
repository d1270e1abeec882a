// 用户 Users (administrators): accounts with their role and jurisdiction, create / edit / disable /
// delete, and each user's API tokens (a new token is shown once). The server checks every field and
// names it in its answer; those messages are shown next to the input they are about.

import { ApiError, get, post, put, del, errorText } from '../api.js';
import { h, fill, fmtTime, fmtAgo, fmtArea, openDialog, confirmDialog, toast } from '../dom.js';
import { t, label, ROLES } from '../i18n.js';
import { areaPrefixes } from '../areas.js';

const enc = encodeURIComponent;

/** A labelled input whose box carries the API field name, so a 422 for that field lands here. */
function field(name, labelText, input, hint) {
  const id = input.id || `u-${name}-${Math.random().toString(36).slice(2, 8)}`;
  input.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) input.setAttribute('aria-describedby', hintId);
  return h('div', { class: 'field', 'data-field-box': name },
    h('label', { for: id }, labelText), input,
    hint && h('span', { class: 'hint small', id: hintId }, hint));
}

/**
 * Shows an error on a form: the API's message (it names the fields) on top, and each field's
 * message next to its input. `local` is a list of {field, message} found before asking the server.
 */
function showErrors(form, top, e) {
  clearErrors(form, top);
  const fields = e instanceof ApiError ? e.fields : Array.isArray(e) ? e : [];
  const unplaced = [];
  let first = null;
  for (const f of fields) {
    const box = form.querySelector(`[data-field-box="${CSS.escape(String(f.field || ''))}"]`);
    if (!box) {
      unplaced.push(f);
      continue;
    }
    const id = `err-${Math.random().toString(36).slice(2, 8)}`;
    const input = box.querySelector('input, select, textarea');
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', `${id} ${input.getAttribute('aria-describedby') || ''}`.trim());
      first = first || input;
    }
    box.append(h('p', { class: 'field-error', id, 'data-testid': 'field-error', 'data-error-field': f.field }, f.message));
  }
  // On top: the server's own message (it names the fields), and any field this form has no input for.
  if (Array.isArray(e)) top.textContent = t('form_check');
  else if (e instanceof ApiError) top.textContent = errorText(new ApiError(e.status, fields.length ? `${t('form_check')}：${e.message}` : e.message, unplaced));
  else top.textContent = errorText(e);
  top.hidden = false;
  (first || top).focus?.();
}

function clearErrors(form, top) {
  for (const el of form.querySelectorAll('.field-error')) el.remove();
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) {
    el.removeAttribute('aria-invalid');
    const rest = (el.getAttribute('aria-describedby') || '').split(' ').filter((x) => x && !x.startsWith('err-'));
    if (rest.length) el.setAttribute('aria-describedby', rest.join(' '));
    else el.removeAttribute('aria-describedby');
  }
  top.textContent = '';
  top.hidden = true;
}

function roleSelect(value, testid) {
  return h('select', { 'data-testid': testid, name: 'role' },
    ROLES.map((r) => h('option', { value: r, selected: r === value }, label('role_', r))));
}

/** The role's one-line description under the select. */
function roleHint(sel, hint) {
  const paint = () => {
    hint.textContent = t(`role_desc_${sel.value}`);
  };
  sel.addEventListener('change', paint);
  paint();
}

/** Marks the area as required while the role is a police station (dispatcher). */
function areaFollowsRole(sel, area) {
  const paint = () => {
    const need = sel.value === 'dispatcher';
    area.required = need;
    area.setAttribute('aria-required', String(need));
    area.placeholder = need ? t('area_ph_station') : t('area_ph_all');
  };
  sel.addEventListener('change', paint);
  paint();
}

function passwordPair(testid, autocomplete) {
  const pw = h('input', { type: 'password', name: 'password', autocomplete, 'data-testid': testid, minlength: 8 });
  const again = h('input', { type: 'password', name: 'password2', autocomplete, 'data-testid': `${testid}-again` });
  return { pw, again };
}

export function mount(root, { user: me, perms, navigate }) {
  let alive = true;
  let users = [];
  const filters = { q: '', role: '' };
  const banner = h('div', { class: 'banner banner-error', role: 'alert', hidden: true, 'data-testid': 'users-error' });
  const count = h('span', { class: 'muted', 'data-testid': 'users-count' });
  const list = h('section', { class: 'panel', 'data-testid': 'users-list' }, h('p', { class: 'empty' }, t('loading')));
  const areaList = h('datalist', { id: 'user-area-list' });

  const load = async () => {
    try {
      const got = await get('/api/users');
      if (!alive) return;
      users = Array.isArray(got) ? got : [];
      banner.hidden = true;
      paint();
    } catch (e) {
      if (!alive) return;
      banner.textContent = errorText(e);
      banner.hidden = false;
    }
  };

  const passes = (u) => (!filters.role || u.role === filters.role)
    && (!filters.q || `${u.username} ${u.display_name} ${u.area || ''}`.toLowerCase().includes(filters.q.toLowerCase()));

  function paint() {
    const shown = users.filter(passes);
    count.textContent = t('users_count', users.length);
    if (!shown.length) {
      fill(list, h('p', { class: 'empty', 'data-testid': 'users-empty' }, t('users_empty')));
      return;
    }
    const cols = [t('username'), t('display_name'), t('role'), t('user_area'), t('account_state'), t('created_at'), t('actions')];
    fill(list, h('table', { class: 'table', 'data-testid': 'users-table' },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, shown.map(row))));
  }

  function row(u) {
    const self = u.username === me.username;
    const btn = (testid, text, onclick, extra = {}) =>
      h('button', { class: ['btn', 'btn-small', extra.cls], type: 'button', 'data-testid': testid, onclick, disabled: extra.disabled, title: extra.title }, text);
    return h('tr', { 'data-testid': 'user-row', 'data-username': u.username, 'data-role': u.role, 'data-disabled': u.disabled ? '1' : '0', class: u.disabled && 'row-disabled' },
      h('td', {}, h('code', { 'data-testid': 'user-username' }, u.username), self && h('span', { class: 'chip chip-self' }, t('you'))),
      h('td', { 'data-testid': 'user-display' }, u.display_name),
      h('td', {}, h('span', { class: ['chip', `role-${u.role}`], 'data-testid': 'user-role-cell' }, label('role_', u.role))),
      h('td', { 'data-testid': 'user-area-cell' }, u.area ? fmtArea(u.area) : h('span', { class: 'muted' }, t('area_everywhere'))),
      h('td', {}, h('span', { class: ['chip', u.disabled ? 'acct-disabled' : 'acct-enabled'], 'data-testid': 'user-state' }, t(u.disabled ? 'acct_disabled' : 'acct_enabled'))),
      h('td', { class: 'num' }, fmtTime(u.created_ms)),
      h('td', {}, h('div', { class: 'row-actions' },
        btn('user-edit', t('edit'), () => editDialog(u)),
        btn('user-tokens', t('api_tokens'), () => tokensDialog(u)),
        u.disabled
          ? btn('user-enable', t('enable'), () => setDisabled(u, false))
          : btn('user-disable', t('disable'), () => setDisabled(u, true), { disabled: self, title: self ? t('not_yourself') : null }),
        perms.has('view_audit') && btn('user-audit', t('audit_trail'), () => navigate('audit', u.username)),
        btn('user-delete', t('delete'), () => remove(u), { cls: 'btn-danger-quiet', disabled: self, title: self ? t('not_yourself') : null }))));
  }

  async function setDisabled(u, disabled) {
    if (disabled) {
      const ok = await confirmDialog(t('disable_title'), t('disable_confirm', u.display_name, u.username), { okText: t('disable') });
      if (!ok) return;
    }
    try {
      await put(`/api/users/${enc(u.username)}`, { disabled });
      toast(t(disabled ? 'user_disabled_done' : 'user_enabled_done', u.username), 'ok');
    } catch (e) {
      toast(errorText(e), 'error');
    }
    load();
  }

  async function remove(u) {
    const ok = await confirmDialog(t('delete_user_title'), t('delete_user_confirm', u.display_name, u.username), { okText: t('delete') });
    if (!ok) return;
    try {
      await del(`/api/users/${enc(u.username)}`);
      toast(t('user_deleted', u.username), 'ok');
    } catch (e) {
      toast(errorText(e), 'error');
    }
    load();
  }

  function createDialog() {
    const username = h('input', { name: 'username', autocomplete: 'off', required: true, 'data-testid': 'new-username', maxlength: 64, spellcheck: 'false' });
    const display = h('input', { name: 'display_name', autocomplete: 'off', 'data-testid': 'new-display', maxlength: 64 });
    const role = roleSelect('operator', 'new-role');
    const area = h('input', { name: 'area', list: 'user-area-list', autocomplete: 'off', 'data-testid': 'new-area' });
    const { pw, again } = passwordPair('new-password', 'new-password');
    const top = h('p', { class: 'form-error banner banner-error', role: 'alert', tabindex: '-1', hidden: true, 'data-testid': 'form-error' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', 'data-testid': 'new-submit' }, t('create_user'));
    const cancel = h('button', { class: 'btn', type: 'button' }, t('cancel'));
    const form = h('form', {
      class: 'form-grid', novalidate: true, 'data-testid': 'user-create-form',
      onsubmit: async (e) => {
        e.preventDefault();
        clearErrors(form, top);
        if (pw.value !== again.value) {
          showErrors(form, top, [{ field: 'password2', message: t('password_mismatch') }]);
          return;
        }
        const body = {
          username: username.value.trim(),
          role: role.value,
          area: area.value.trim() || null,
          password: pw.value,
        };
        if (display.value.trim()) body.display_name = display.value.trim();
        submit.disabled = true;
        try {
          const u = await post('/api/users', body);
          toast(t('user_created', u.username), 'ok');
          close();
          load();
        } catch (err) {
          submit.disabled = false;
          showErrors(form, top, err);
        }
      },
    },
    top,
    field('username', t('username'), username, t('username_hint')),
    field('display_name', t('display_name'), display, t('display_name_hint')),
    field('role', t('role'), role, ' '),
    field('area', t('user_area'), area, t('area_hint')),
    field('password', t('initial_password'), pw, t('password_hint')),
    field('password2', t('password_again'), again),
    h('div', { class: 'form-actions' }, cancel, submit));
    roleHint(role, form.querySelector('[data-field-box="role"] .hint'));
    areaFollowsRole(role, area);
    const { close } = openDialog(t('create_user'), form, { testid: 'user-create-dialog' });
    cancel.addEventListener('click', close);
    setTimeout(() => username.focus(), 0);
  }

  function editDialog(u) {
    const self = u.username === me.username;
    const display = h('input', { name: 'display_name', value: u.display_name, autocomplete: 'off', 'data-testid': 'edit-display', maxlength: 64 });
    const role = roleSelect(u.role, 'edit-role');
    role.disabled = self;
    const area = h('input', { name: 'area', value: u.area || '', list: 'user-area-list', autocomplete: 'off', 'data-testid': 'edit-area' });
    const disabled = h('input', { type: 'checkbox', id: `edit-disabled-${Math.random().toString(36).slice(2, 7)}`, checked: u.disabled, disabled: self, 'data-testid': 'edit-disabled' });
    const { pw, again } = passwordPair('edit-password', 'new-password');
    const top = h('p', { class: 'form-error banner banner-error', role: 'alert', tabindex: '-1', hidden: true, 'data-testid': 'form-error' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', 'data-testid': 'edit-submit' }, t('save'));
    const cancel = h('button', { class: 'btn', type: 'button' }, t('cancel'));
    const form = h('form', {
      class: 'form-grid', novalidate: true, 'data-testid': 'user-edit-form',
      onsubmit: async (e) => {
        e.preventDefault();
        clearErrors(form, top);
        if (pw.value !== again.value) {
          showErrors(form, top, [{ field: 'password2', message: t('password_mismatch') }]);
          return;
        }
        // Only what changed: an unchanged field is left as the server has it.
        const body = {};
        if (display.value.trim() !== u.display_name) body.display_name = display.value.trim();
        if (role.value !== u.role) body.role = role.value;
        if ((area.value.trim() || null) !== (u.area || null)) body.area = area.value.trim() || null;
        if (disabled.checked !== u.disabled) body.disabled = disabled.checked;
        if (pw.value) body.password = pw.value;
        if (!Object.keys(body).length) {
          toast(t('nothing_changed'), 'ok');
          close();
          return;
        }
        submit.disabled = true;
        try {
          await put(`/api/users/${enc(u.username)}`, body);
          toast(t('user_saved', u.username), 'ok');
          close();
          load();
        } catch (err) {
          submit.disabled = false;
          showErrors(form, top, err);
        }
      },
    },
    top,
    h('div', { class: 'field' }, h('span', {}, t('username')), h('code', { 'data-testid': 'edit-username' }, u.username)),
    field('display_name', t('display_name'), display),
    field('role', t('role'), role, self ? t('not_yourself') : ' '),
    field('area', t('user_area'), area, t('area_hint')),
    h('div', { class: 'field field-check', 'data-field-box': 'disabled' }, disabled,
      h('label', { for: disabled.id }, t('disable_account')),
      h('span', { class: 'hint small' }, self ? t('not_yourself') : t('disable_hint'))),
    field('password', t('new_password'), pw, t('new_password_hint')),
    field('password2', t('password_again'), again),
    h('div', { class: 'form-actions' }, cancel, submit));
    if (!self) roleHint(role, form.querySelector('[data-field-box="role"] .hint'));
    areaFollowsRole(role, area);
    const { close } = openDialog(t('edit_user_title', u.display_name, u.username), form, { testid: 'user-edit-dialog' });
    cancel.addEventListener('click', close);
    setTimeout(() => display.focus(), 0);
  }

  function tokensDialog(u) {
    const base = `/api/users/${enc(u.username)}/tokens`;
    const tableBox = h('div', { 'data-testid': 'tokens-list' }, h('p', { class: 'empty' }, t('loading')));
    const once = h('div', { class: 'token-once', role: 'alert', hidden: true, 'data-testid': 'token-once' });
    const name = h('input', { name: 'name', autocomplete: 'off', required: true, maxlength: 64, placeholder: t('token_name_ph'), 'data-testid': 'token-name' });
    const top = h('p', { class: 'form-error banner banner-error', role: 'alert', tabindex: '-1', hidden: true, 'data-testid': 'form-error' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', 'data-testid': 'token-create' }, t('token_create'));
    let open = true;

    const loadTokens = async () => {
      try {
        const rows = await get(base);
        if (!open) return;
        paintTokens(Array.isArray(rows) ? rows : []);
      } catch (e) {
        if (open) fill(tableBox, h('p', { class: 'banner banner-error', role: 'alert' }, errorText(e)));
      }
    };

    const paintTokens = (rows) => {
      if (!rows.length) {
        fill(tableBox, h('p', { class: 'empty', 'data-testid': 'tokens-empty' }, t('tokens_empty')));
        return;
      }
      const expiry = rows.some((r) => r.expires_ms !== undefined && r.expires_ms !== null);
      const cols = [t('token_name'), t('token_id'), t('created_at'), t('last_used'), expiry && t('expires_at'), t('state'), ''].filter((c) => c !== false);
      fill(tableBox, h('table', { class: 'table', 'data-testid': 'tokens-table' },
        h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows.map((r) => h('tr', { 'data-testid': 'token-row', 'data-id': r.id, 'data-name': r.name, 'data-revoked': r.revoked ? '1' : '0', class: r.revoked && 'row-disabled' },
          h('td', {}, r.name),
          h('td', {}, h('code', {}, `#${r.id}`)),
          h('td', { class: 'num' }, fmtTime(r.created_ms)),
          h('td', { class: 'num', title: r.last_used_ms ? fmtTime(r.last_used_ms) : null }, r.last_used_ms ? fmtAgo(r.last_used_ms) : h('span', { class: 'muted' }, t('never_used'))),
          expiry && h('td', { class: 'num' }, r.expires_ms ? fmtTime(r.expires_ms) : h('span', { class: 'muted' }, t('no_expiry'))),
          h('td', {}, h('span', { class: ['chip', r.revoked ? 'acct-disabled' : 'acct-enabled'], 'data-testid': 'token-state' }, t(r.revoked ? 'token_revoked' : 'token_active'))),
          h('td', {}, !r.revoked && h('button', { class: 'btn btn-small btn-danger-quiet', type: 'button', 'data-testid': 'token-revoke', onclick: () => revoke(r) }, t('revoke'))))))));
    };

    const revoke = async (r) => {
      const ok = await confirmDialog(t('revoke_title'), t('revoke_confirm', r.name, u.username), { okText: t('revoke') });
      if (!ok) return;
      try {
        await del(`${base}/${enc(r.id)}`);
        toast(t('token_revoked_done', r.name), 'ok');
      } catch (e) {
        toast(errorText(e), 'error');
      }
      loadTokens();
    };

    const showOnce = (token, tokenName) => {
      const value = h('input', { class: 'token-value', readonly: true, value: token, 'data-testid': 'token-value', 'aria-label': t('token_value'), spellcheck: 'false' });
      value.addEventListener('focus', () => value.select());
      const copy = h('button', { class: 'btn btn-primary', type: 'button', 'data-testid': 'token-copy' }, t('copy'));
      copy.addEventListener('click', async () => {
        value.focus();
        value.select();
        try {
          await navigator.clipboard.writeText(token);
          toast(t('copied'), 'ok');
        } catch {
          // No clipboard permission (plain http on another host): the text is selected for Ctrl+C.
          toast(t('copy_manually'), 'ok');
        }
      });
      const done = h('button', { class: 'btn', type: 'button', 'data-testid': 'token-done' }, t('token_saved_it'));
      done.addEventListener('click', () => {
        fill(once);
        once.hidden = true;
        name.focus();
      });
      fill(once,
        h('p', { class: 'token-warn' }, h('strong', {}, t('token_once_title', tokenName))),
        h('p', { class: 'small' }, t('token_once_text')),
        h('div', { class: 'token-row' }, value, copy),
        h('p', { class: 'hint small' }, t('token_copy_hint')),
        h('div', { class: 'form-actions' }, done));
      once.hidden = false;
      value.focus();
    };

    const form = h('form', {
      class: 'token-form', novalidate: true, 'data-testid': 'token-form',
      onsubmit: async (e) => {
        e.preventDefault();
        clearErrors(form, top);
        submit.disabled = true;
        try {
          const res = await post(base, { name: name.value.trim() });
          name.value = '';
          showOnce(res.token, res.name);
          loadTokens();
        } catch (err) {
          showErrors(form, top, err);
        } finally {
          submit.disabled = false;
        }
      },
    }, top, h('div', { class: 'toolbar' }, field('name', t('token_name'), name), submit));

    openDialog(t('tokens_title', u.display_name, u.username), [
      h('p', { class: 'hint' }, t('tokens_intro')),
      u.disabled && h('p', { class: 'banner banner-warn-inline' }, t('tokens_user_disabled')),
      form, once, h('h3', {}, t('tokens_list')), tableBox,
    ], { testid: 'tokens-dialog', wide: true, onClose: () => { open = false; } });
    loadTokens();
    setTimeout(() => name.focus(), 0);
  }

  const search = h('input', {
    type: 'search', id: 'users-q', 'data-testid': 'users-search', placeholder: t('users_search_ph'),
    oninput: (e) => { filters.q = e.target.value.trim(); paint(); },
  });
  const roleFilter = h('select', {
    id: 'users-role', 'data-testid': 'users-role-filter', onchange: (e) => { filters.role = e.target.value; paint(); },
  }, h('option', { value: '' }, t('all')), ROLES.map((r) => h('option', { value: r }, label('role_', r))));

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, t('users_title')), count,
      h('button', { class: 'btn btn-primary', type: 'button', 'data-testid': 'user-new', onclick: createDialog }, t('create_user')),
      h('button', { class: 'btn', type: 'button', 'data-testid': 'users-refresh', onclick: load }, t('refresh'))),
    banner,
    h('div', { class: 'toolbar', role: 'search' },
      h('div', { class: 'field' }, h('label', { for: 'users-q' }, t('search')), search),
      h('div', { class: 'field' }, h('label', { for: 'users-role' }, t('role')), roleFilter)),
    list, areaList);

  load();
  // Area suggestions for the jurisdiction field, from the cameras' areas (county → township → village).
  if (perms.has('view_cameras')) {
    get('/api/cameras').then((cams) => {
      if (!alive || !Array.isArray(cams)) return;
      fill(areaList, areaPrefixes(cams).map((a) => h('option', { value: a.key })));
    }).catch(() => { /* suggestions only */ });
  }
  return () => {
    alive = false;
  };
}
