// Login: username and password; 401 says so, 429 counts down before the next try.

import { ApiError, post, errorText } from '../api.js';
import { h } from '../dom.js';
import { t } from '../i18n.js';

export function mount(root, { onLogin, notice }) {
  let countdown = null;
  const user = h('input', { id: 'login-user', name: 'username', autocomplete: 'username', required: true, 'data-testid': 'login-username', autofocus: true });
  const pass = h('input', { id: 'login-pass', name: 'password', type: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'login-password' });
  const msg = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'login-error', hidden: !notice }, notice || '');
  const btn = h('button', { class: 'btn btn-primary btn-block', type: 'submit', 'data-testid': 'login-submit' }, t('login_button'));

  const show = (text) => {
    msg.textContent = text;
    msg.hidden = !text;
  };

  const wait = (seconds) => {
    clearInterval(countdown);
    let left = Math.ceil(seconds);
    btn.disabled = true;
    show(t('too_many', left));
    countdown = setInterval(() => {
      left -= 1;
      if (left <= 0) {
        clearInterval(countdown);
        btn.disabled = false;
        show('');
      } else {
        show(t('too_many', left));
      }
    }, 1000);
  };

  const form = h('form', {
    class: 'login-form', 'data-testid': 'login-form', novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      if (!user.value || !pass.value) {
        show(`${t('username')} / ${t('password')}`);
        (user.value ? pass : user).focus();
        return;
      }
      btn.disabled = true;
      show('');
      try {
        const res = await post('/api/auth/login', { username: user.value.trim(), password: pass.value }, { quiet401: true });
        const u = res && res.user ? res.user : res;
        await onLogin(u);
      } catch (err) {
        btn.disabled = false;
        if (err instanceof ApiError && err.status === 429) {
          wait(err.retryAfter || 60);
        } else if (err instanceof ApiError && err.status === 401) {
          show(err.message && err.message !== t('login_failed') ? `${t('login_failed')}（${err.message}）` : t('login_failed'));
          pass.select();
        } else {
          show(errorText(err));
        }
      }
    },
  },
  h('h1', {}, t('login_title')),
  h('div', { class: 'field' }, h('label', { for: 'login-user' }, t('username')), user),
  h('div', { class: 'field' }, h('label', { for: 'login-pass' }, t('password')), pass),
  msg,
  btn);

  root.append(h('section', { class: 'login' },
    h('div', { class: 'login-card' },
      h('div', { class: 'login-brand' }, h('img', { src: '/ui/favicon.svg', alt: '', width: 56, height: 56 }),
        h('div', {}, h('div', { class: 'login-title' }, `${t('app_name')} · ${t('app_sub')}`),
          h('div', { class: 'login-sub' }, '综治中心视频智能分析平台 · Video analytics for the command hall'))),
      form)));
  setTimeout(() => user.focus(), 0);
  return () => clearInterval(countdown);
}
