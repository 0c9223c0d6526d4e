// main.ts: the console's shell: sign-in, navigation (history API: the
// server answers index.html for every non-API path), and the page in view.
import { clear, errorText, field, h, status } from './dom.js';
import type { Page } from './page.js';
import { accounts } from './pages/accounts.js';
import { apps } from './pages/apps.js';
import { channels } from './pages/channels.js';
import { connections } from './pages/connections.js';
import { lockdown } from './pages/lockdown.js';
import { overview } from './pages/overview.js';
import { rpc } from './pages/rpc.js';
import { Session, newKeySeed } from './session.js';

const PAGES: Page[] = [overview, connections, channels, rpc, accounts, apps, lockdown];

const root = document.getElementById('app')!;
let session: Session | undefined;
let leave: AbortController | undefined;

function pageFor(path: string): Page {
  return PAGES.find((p) => p.path === path) ?? overview;
}

function signIn(message = ''): void {
  leave?.abort();
  clear(root);
  const st = status();
  if (message) st.fail(message);
  const token = h('textarea', { id: 'token', name: 'token', rows: 3, spellcheck: 'false', autocomplete: 'off', required: true });
  const seed = h('input', { id: 'seed', name: 'seed', type: 'password', autocomplete: 'off', spellcheck: 'false' });
  const name = h('input', { id: 'device-name', name: 'device-name', value: 'console', autocomplete: 'off' });
  const generated = h('p', { class: 'generated', 'aria-live': 'polite' });
  const busy = async (fn: () => Promise<Session>) => {
    st.set('Signing in…');
    try {
      session = await fn();
      history.replaceState(null, '', location.pathname === '/signin' ? '/' : location.pathname);
      shell();
    } catch (e) {
      st.fail(errorText(e));
    }
  };
  root.append(
    h('main', { class: 'signin', id: 'main' },
      h('h1', {}, 'Junction console'),
      st,
      h('form', { 'aria-labelledby': 'si-token', onsubmit: (e: Event) => (e.preventDefault(), void busy(() => Session.fromToken(token.value))) },
        h('h2', { id: 'si-token' }, 'Access token'),
        field('Token', token, 'An admin token: junction token --user ops --device console --scope admin,read,write'),
        h('button', { type: 'submit' }, 'Sign in with token')),
      h('form', { 'aria-labelledby': 'si-key', onsubmit: (e: Event) => (e.preventDefault(), void busy(() => Session.fromKey(seed.value, name.value))) },
        h('h2', { id: 'si-key' }, 'Key login'),
        field('Account key (base64 seed)', seed, 'The key stays in this page: the server sees only a signature.'),
        field('Device name', name),
        h('div', { class: 'row' },
          h('button', { type: 'submit' }, 'Sign in with key'),
          h('button', { type: 'button', onclick: () => {
            seed.value = newKeySeed();
            seed.type = 'text';
            generated.textContent = 'A new key is in the field: save it, it is the account.';
          } }, 'Generate a key')),
        generated),
    ),
  );
  token.focus();
}

function shell(): void {
  const s = session!;
  clear(root);
  const dot = h('span', { class: 'conn', id: 'conn-state', role: 'status' }, s.client.state);
  const nav = h('nav', { 'aria-label': 'Pages' }, h('ul', {}, ...PAGES.map((p) => h('li', {}, h('a', { href: p.path, 'data-path': p.path }, p.title)))));
  const main = h('main', { id: 'main', tabindex: -1 });
  root.append(
    h('a', { class: 'skip', href: '#main' }, 'Skip to content'),
    h('header', {},
      h('a', { class: 'brand', href: '/' }, 'Junction'),
      h('span', { class: 'who' }, s.who), dot,
      h('button', { type: 'button', class: 'signout', onclick: () => void s.signOut().then(() => signIn()) }, 'Sign out')),
    nav, main,
  );
  root.querySelector('.skip')!.addEventListener('click', (e) => {
    e.preventDefault();
    main.focus();
  });
  nav.addEventListener('click', (e) => {
    const a = (e.target as Element).closest('a');
    if (!a || (e as MouseEvent).ctrlKey || (e as MouseEvent).metaKey) return;
    e.preventDefault();
    go(a.getAttribute('href')!, true);
  });
  root.querySelector('.brand')!.addEventListener('click', (e) => {
    e.preventDefault();
    go('/', true);
  });
  const poll = setInterval(() => {
    dot.textContent = s.client.state;
    dot.dataset.state = s.client.state;
    if (s.client.state === 'closed') {
      clearInterval(poll);
      signIn(`The connection closed (code ${s.client.closeCode}). Sign in again.`);
    }
  }, 500);
  render(false);
}

function go(path: string, focus: boolean): void {
  if (path !== location.pathname) history.pushState(null, '', path);
  render(focus);
}

function render(focus: boolean): void {
  const s = session;
  if (!s) return signIn();
  leave?.abort();
  leave = new AbortController();
  const page = pageFor(location.pathname);
  const main = document.getElementById('main')!;
  clear(main);
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('data-path') === page.path) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${page.title} · Junction`;
  main.append(h('h1', {}, page.title));
  if (page.admin && !s.admin) main.append(h('p', { class: 'status muted' }, 'This page needs a token with scope admin.'));
  void Promise.resolve(page.render(main, s, leave.signal)).catch((e) => main.append(h('p', { class: 'status err' }, errorText(e))));
  if (focus) main.focus();
}

window.addEventListener('popstate', () => render(true));

Session.restore().then((s) => {
  session = s;
  if (s) shell();
  else signIn();
});
