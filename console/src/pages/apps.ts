// Apps (docs/apps.md): the registry (/api/v1/admin/apps), one app's API
// keys (rotate, revoke; a new key's secret is shown once), its installations
// (/api/v1/admin/apps/{id}/installs: each user's grant and sessions), its
// sessions and their states (/api/v1/apps/{id}/sessions; an admin may stop
// one), its webhook delivery log (/api/v1/apps/{id}/deliveries), a device's
// recent output outcomes (/api/v1/admin/devices/{id}/outputs: in memory, on
// the node that answers), all refreshed while in view, and the signed-in
// user's own installs (/api/v1/apps/installs). Registering an app shows its
// first key and webhook secret once.
import { clear, errorText, field, h, status, table, time } from '../dom.js';
import { adminError, type Page } from '../page.js';
import type { Session } from '../session.js';
import type {
  App, AppCreated, AppDeliveryList, AppInstallDetail, AppInstallDetailList, AppInstallList, AppKeyList, AppKeySecret, AppList, AppSessionList, AppSessionStopped,
  DeviceOutputs,
} from '../../../sdk/ts/src/protocol.js';

const enc = encodeURIComponent;
const list = (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean);

/** secretBox shows a secret once, selectable, with what it is. */
function secretBox(label: string, value: string): HTMLElement {
  const out = h('input', { type: 'text', readonly: true, value, class: 'secret', spellcheck: 'false', 'aria-label': label });
  out.addEventListener('focus', () => out.select());
  return h('div', { class: 'field' }, h('label', {}, label, ' (shown once: copy it now)'), out);
}

/** outputsView is the Device outputs section: a device id, and its recent output outcomes, refreshed while in view. */
function outputsView(s: Session, signal: AbortSignal): { section: HTMLElement; show(device: string): void } {
  const device = h('input', { id: 'out-device', required: true, placeholder: 'glasses-1', autocomplete: 'off', spellcheck: 'false' });
  const info = status();
  const out = h('div', { id: 'out-list' });
  let shown = '';
  const load = async () => {
    const id = device.value.trim();
    if (!id) return;
    try {
      const r = await s.rest<DeviceOutputs>('GET', `/api/v1/admin/devices/${enc(id)}/outputs`);
      info.set(`Node ${r.nodeId}: ${r.deviceId} ${r.declared ? 'has declared surfaces here' : 'has no declared surfaces here now'}; ${r.outcomes.length} recent outcome${r.outcomes.length === 1 ? '' : 's'} (kept in memory on this node).`);
      const sig = JSON.stringify(r);
      if (sig === shown) return;
      shown = sig;
      clear(out);
      out.append(r.outcomes.length ? table(`Output outcomes of ${r.deviceId}, newest first`, ['Decided', 'App', 'Session', 'Request', 'Surface', 'Priority', 'Outcome', 'Reason', 'Ended'], r.outcomes.map((o) => [
        h('span', { title: `requested ${time(o.requestedAt)}` }, time(o.decidedAt)), o.appId, o.sessionId, o.requestId, o.surface, o.priority, h('span', { class: `out-outcome ${o.outcome}` }, o.outcome),
        [o.reason, o.retryAfterMs ? `retry in ${o.retryAfterMs} ms` : '', o.force ? 'forced' : ''].filter(Boolean).join(', '),
        o.endedAt ? `${time(o.endedAt)} (${o.endReason ?? ''})` : o.outcome === 'shown' ? 'on the device' : '',
      ])) : h('p', {}, 'No output outcome recorded for this device on this node.'));
    } catch (e) {
      shown = '';
      clear(out);
      info.fail(adminError(e) ?? e);
    }
  };
  const poll = setInterval(() => void load(), 2000);
  signal.addEventListener('abort', () => clearInterval(poll), { once: true });
  const section = h('section', { 'aria-labelledby': 'apps-outputs' }, h('h2', { id: 'apps-outputs', tabindex: -1 }, 'Device outputs'),
    h('p', {}, 'Each output request\'s one terminal outcome, as the arbiter decided it (the last 50 per device, on the node the device is connected to).'),
    h('form', { class: 'row', onsubmit: (e: Event) => (e.preventDefault(), (shown = ''), void load()) },
      field('Device id', device), h('button', { type: 'submit' }, 'Show outcomes')),
    info, out);
  return {
    section,
    show(id: string) {
      device.value = id;
      shown = '';
      void load();
      (section.querySelector('h2') as HTMLElement).focus();
    },
  };
}

function detail(box: HTMLElement, s: Session, app: App, signal: AbortSignal, showOutputs: (device: string) => void): void {
  clear(box);
  const st = status();
  const secrets = h('div', { id: 'app-secrets' });
  const keys = h('div', {});
  const installs = h('div', { id: 'app-installs' });
  const sessions = h('div', { id: 'app-sessions' });
  const deliveries = h('div', {});
  const state = h('select', { id: 'app-session-state', 'aria-label': 'Session state' },
    ...['', 'starting', 'running', 'transport_down', 'stopped'].map((x) => h('option', { value: x }, x || 'all states')));
  const base = `/api/v1/admin/apps/${enc(app.id)}`;

  const loadKeys = async () => {
    try {
      const r = await s.rest<AppKeyList>('GET', `${base}/keys`);
      clear(keys);
      keys.append(table(`API keys of ${app.id}`, ['Key', 'Created', 'Last used', 'Expires', 'State', ''], r.keys.map((k) => [
        k.id, time(k.createdAt), time(k.lastUsedAt), time(k.expiresAt), k.revokedAt ? `revoked ${time(k.revokedAt)}` : k.active ? 'active' : 'inactive',
        k.revokedAt ? '' : h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke key ${k.id}`, onclick: async () => {
          if (!confirm(`Revoke key ${k.id}? Its sessions end (4003) and it stops working.`)) return;
          try {
            await s.rest('DELETE', `${base}/keys/${enc(k.id)}`);
            st.ok(`Revoked key ${k.id}.`);
            void loadKeys();
          } catch (e) {
            st.fail(e);
          }
        } }, 'Revoke'),
      ])));
    } catch (e) {
      clear(keys);
      keys.append(h('p', { class: 'status err' }, adminError(e) ?? errorText(e)));
    }
  };

  // Installs: the first page refreshes while in view; "More" appends the next.
  let installsShown = '';
  const installRow = (i: AppInstallDetail) => [i.userId, i.scopes.join(', ') || 'none', i.activeSessions, time(i.lastSessionAt), time(i.createdAt), time(i.updatedAt)];
  const loadInstalls = async (after?: string) => {
    try {
      const q = new URLSearchParams({ limit: '50' });
      if (after) q.set('after', after);
      const r = await s.rest<AppInstallDetailList>('GET', `${base}/installs?${q}`);
      if (after) {
        installs.querySelector('tbody')?.append(...r.installs.map((i) => h('tr', {}, ...installRow(i).map((c) => h('td', {}, c)))));
        installs.querySelector('button.more')?.remove();
      } else {
        const sig = JSON.stringify(r);
        if (sig === installsShown) return;
        installsShown = sig;
        clear(installs);
        installs.append(r.installs.length ? table(`Installs of ${app.id}`, ['User', 'Scopes granted', 'Active sessions', 'Last session', 'Installed', 'Updated'], r.installs.map(installRow))
          : h('p', {}, 'No user has installed this app yet.'));
      }
      if (r.next) installs.append(h('button', { type: 'button', class: 'more', onclick: () => void loadInstalls(r.next) }, 'More installs'));
    } catch (e) {
      installsShown = '';
      clear(installs);
      installs.append(h('p', { class: 'status err' }, adminError(e) ?? errorText(e)));
    }
  };

  let shown = '';
  const loadSessions = async () => {
    try {
      const q = new URLSearchParams({ limit: '100' });
      if (state.value) q.set('state', state.value);
      const r = await s.rest<AppSessionList>('GET', `/api/v1/apps/${enc(app.id)}/sessions?${q}`);
      const sig = JSON.stringify(r.sessions);
      if (sig === shown) return; // unchanged: keep the table (and the focus in it)
      shown = sig;
      clear(sessions);
      sessions.append(r.sessions.length ? table(`Sessions of ${app.id}`, ['Session', 'Device', 'State', 'Stop reason', 'Failure', 'Created', 'Updated', '', ''], r.sessions.map((x) => [
        x.id, x.deviceId, h('span', { class: `app-state ${x.state}` }, x.state), x.stopReason ?? '', x.stage ? `${x.stage}: ${x.error ?? ''}` : '', time(x.createdAt), time(x.updatedAt),
        h('button', { type: 'button', 'aria-label': `Output outcomes of device ${x.deviceId}`, onclick: () => showOutputs(x.deviceId) }, 'Outputs'),
        x.state === 'stopped' ? '' : h('button', { type: 'button', class: 'danger', 'aria-label': `Stop session ${x.id}`, onclick: async () => {
          if (!confirm(`Stop session ${x.id}? The app and the device are told (reason admin).`)) return;
          try {
            const res = await s.rest<AppSessionStopped>('POST', `/api/v1/apps/${enc(app.id)}/sessions/${enc(x.id)}/stop`);
            st.ok(`Session ${x.id} ${res.alreadyStopped ? 'was already stopped' : 'stopped'}.`);
            void loadSessions();
          } catch (e) {
            st.fail(e);
          }
        } }, 'Stop'),
      ])) : h('p', {}, state.value ? `No session in state ${state.value}.` : 'No sessions yet: a device starts one.'));
    } catch (e) {
      shown = '';
      clear(sessions);
      sessions.append(h('p', { class: 'status err' }, errorText(e)));
    }
  };

  const loadDeliveries = async () => {
    try {
      const r = await s.rest<AppDeliveryList>('GET', `/api/v1/apps/${enc(app.id)}/deliveries?limit=50`);
      clear(deliveries);
      deliveries.append(r.deliveries.length ? table(`Webhook deliveries of ${app.id}, newest first`, ['At', 'Delivery', 'Attempt', 'Stage', 'Status', 'Latency', 'Retry in', 'Error'], r.deliveries.map((d) => [
        time(d.at), d.delivery, d.attempt, d.stage, d.status ?? '', `${d.latencyMs} ms`, d.retryMs === undefined ? '' : `${d.retryMs} ms`, d.error ?? '',
      ])) : h('p', {}, 'No webhook delivered yet (the log is in memory, per node).'));
    } catch (e) {
      clear(deliveries);
      deliveries.append(h('p', { class: 'status err' }, errorText(e)));
    }
  };

  const rotate = async () => {
    try {
      const r = await s.rest<AppKeySecret>('POST', `${base}/keys`, {});
      clear(secrets);
      secrets.append(secretBox(`New API key ${r.apiKey.id}`, r.key));
      st.ok(`Key ${r.apiKey.id} created; the earlier keys keep working until revoked or their overlap ends.`);
      (secrets.querySelector('input') as HTMLInputElement).focus();
      void loadKeys();
    } catch (e) {
      st.fail(adminError(e) ?? e);
    }
  };
  state.addEventListener('change', () => void loadSessions());

  const heading = h('h2', { id: 'app-detail', tabindex: -1 }, `${app.name} (${app.id})`);
  box.append(
    h('section', { 'aria-labelledby': 'app-detail' }, heading,
      h('dl', { class: 'facts' },
        h('dt', {}, 'Kind'), h('dd', {}, app.kind), h('dt', {}, 'Priority'), h('dd', {}, app.priority),
        h('dt', {}, 'Owner'), h('dd', {}, app.owner), h('dt', {}, 'Webhook'), h('dd', {}, app.webhookUrl || 'none'),
        h('dt', {}, 'Scopes'), h('dd', {}, app.scopes.join(', ') || 'none'), h('dt', {}, 'Capabilities'), h('dd', {}, app.capabilities.join(', ') || 'none'),
        h('dt', {}, 'Tools'), h('dd', {}, app.tools.map((t) => t.name).join(', ') || 'none')),
      st, secrets,
      h('h3', {}, 'API keys'), h('button', { type: 'button', id: 'app-rotate', onclick: () => void rotate() }, 'Rotate key (new key)'), keys,
      h('h3', {}, 'Installs'), h('button', { type: 'button', onclick: () => ((installsShown = ''), void loadInstalls()) }, 'Refresh'), installs,
      h('h3', {}, 'Sessions'), h('div', { class: 'row' }, state, h('button', { type: 'button', onclick: () => void loadSessions() }, 'Refresh')), sessions,
      h('h3', {}, 'Webhook deliveries'), h('button', { type: 'button', onclick: () => void loadDeliveries() }, 'Refresh'), deliveries),
  );
  heading.focus();
  void loadKeys();
  void loadInstalls();
  void loadSessions();
  void loadDeliveries();
  // Installs and sessions change on their own (a user installs, a device starts or stops a session): keep them current while the page is in view.
  const poll = setInterval(() => {
    if (!installs.querySelector('button.more')) void loadInstalls(); // not while more pages are open: the refresh would drop them
    void loadSessions();
    void loadDeliveries();
  }, 2000);
  signal.addEventListener('abort', () => clearInterval(poll), { once: true });
}

export const apps: Page = {
  path: '/apps',
  title: 'Apps',
  admin: true,
  render(main, s, signal) {
    const st = status();
    const registry = h('div', {});
    const created = h('div', { id: 'app-created' });
    const detailBox = h('div', {});
    const installs = h('div', {});
    const outputs = outputsView(s, signal);
    let open: AbortController | undefined;
    signal.addEventListener('abort', () => open?.abort());

    const show = (app: App) => {
      open?.abort();
      open = new AbortController();
      signal.addEventListener('abort', () => open?.abort(), { once: true });
      detail(detailBox, s, app, open.signal, outputs.show);
    };

    const loadRegistry = async () => {
      try {
        const r = await s.rest<AppList>('GET', '/api/v1/admin/apps?limit=100');
        clear(registry);
        registry.append(r.apps.length ? table('Registered apps', ['App', 'Name', 'Kind', 'Priority', 'Webhook', 'Scopes', ''], r.apps.map((a) => [
          a.id, a.name, a.kind, a.priority, a.webhookUrl, a.scopes.join(', '),
          h('button', { type: 'button', 'aria-label': `Open ${a.id}`, onclick: () => show(a) }, 'Open'),
        ])) : h('p', {}, 'No app registered yet.'));
      } catch (e) {
        clear(registry);
        registry.append(h('p', { class: 'status muted' }, adminError(e) ?? errorText(e)));
      }
    };

    const loadInstalls = async () => {
      try {
        const r = await s.rest<AppInstallList>('GET', '/api/v1/apps/installs?limit=100');
        clear(installs);
        installs.append(r.installs.length ? table(`Apps installed by ${s.welcome?.principal.userId ?? 'this user'}`, ['App', 'Scopes granted', 'Installed', 'Updated'], r.installs.map((i) => [
          i.appId, i.scopes.join(', '), time(i.createdAt), time(i.updatedAt),
        ])) : h('p', {}, 'This user has installed no app (users install apps from their devices).'));
      } catch (e) {
        clear(installs);
        installs.append(h('p', { class: 'status muted' }, errorText(e)));
      }
    };

    const id = h('input', { id: 'app-id', required: true, placeholder: 'com.example.captions', autocomplete: 'off', spellcheck: 'false' });
    const name = h('input', { id: 'app-name', required: true, autocomplete: 'off' });
    const webhook = h('input', { id: 'app-webhook', type: 'url', placeholder: 'https://app.example.com/junction', autocomplete: 'off', spellcheck: 'false' });
    const scopes = h('input', { id: 'app-scopes', placeholder: 'read,write', autocomplete: 'off', spellcheck: 'false' });
    const caps = h('input', { id: 'app-capabilities', placeholder: 'display,microphone', autocomplete: 'off', spellcheck: 'false' });
    const internal = h('input', { id: 'app-internal', type: 'checkbox' });
    const register = async () => {
      try {
        const r = await s.rest<AppCreated>('POST', '/api/v1/admin/apps', {
          id: id.value.trim(), name: name.value.trim(), webhookUrl: webhook.value.trim() || undefined,
          scopes: list(scopes.value), capabilities: list(caps.value), internal: internal.checked || undefined,
        });
        clear(created);
        created.append(secretBox(`API key ${r.key.apiKey.id} of ${r.app.id}`, r.key.key));
        if (r.webhookSecret) created.append(secretBox(`Webhook secret of ${r.app.id}`, r.webhookSecret.secret));
        st.ok(`Registered ${r.app.id}.`);
        (created.querySelector('input') as HTMLInputElement).focus();
        void loadRegistry();
        show(r.app);
      } catch (e) {
        st.fail(adminError(e) ?? e);
      }
    };

    main.append(
      h('section', { 'aria-labelledby': 'apps-registry' }, h('h2', { id: 'apps-registry' }, 'Registry'),
        h('button', { type: 'button', onclick: () => void loadRegistry() }, 'Refresh'), registry),
      detailBox,
      outputs.section,
      h('section', { 'aria-labelledby': 'apps-register' }, h('h2', { id: 'apps-register' }, 'Register an app'),
        h('form', { class: 'stack', onsubmit: (e: Event) => (e.preventDefault(), void register()) },
          field('App id (reverse DNS)', id), field('Name', name), field('Webhook URL', webhook),
          field('Scopes users may grant (comma-separated)', scopes), field('Required device capabilities (comma-separated)', caps),
          h('div', { class: 'field check' }, internal, h('label', { for: 'app-internal' }, 'Internal: webhooks may target loopback and private addresses')),
          h('button', { type: 'submit' }, 'Register')),
        st, created),
      h('section', { 'aria-labelledby': 'apps-installs' }, h('h2', { id: 'apps-installs' }, 'Your installs'), installs),
    );
    void loadRegistry();
    void loadInstalls();
  },
};
