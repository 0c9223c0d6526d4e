// Connections: the open WebSocket connections of this node
// (GET /api/v1/admin/connections), filtered by user, device, kind and node;
// inspect one; disconnect it (DELETE: closed with 4011).
import { clear, errorText, field, h, json, status, table, time } from '../dom.js';
import { adminError, type Page } from '../page.js';
import type { Rest } from '../../../sdk/ts/src/protocol.js';

type AdminConnection = Rest.AdminConnection;

const KINDS = ['', 'phone', 'tablet', 'tv', 'glasses', 'browser', 'machine', 'iot', 'app', 'other'];

export const connections: Page = {
  path: '/connections',
  title: 'Connections',
  admin: true,
  render(main, s) {
    const user = h('input', { id: 'cn-user', name: 'user', autocomplete: 'off' });
    const device = h('input', { id: 'cn-device', name: 'device', autocomplete: 'off' });
    const kind = h('select', { id: 'cn-kind', name: 'kind' }, ...KINDS.map((k) => h('option', { value: k }, k || 'any')));
    const node = h('input', { id: 'cn-node', name: 'node', autocomplete: 'off' });
    const st = status();
    const list = h('div', {});
    const detail = h('div', { class: 'out' });
    let cursor = '';

    const load = async (more = false) => {
      if (!more) {
        cursor = '';
        clear(list);
      }
      const q = new URLSearchParams({ limit: '100' });
      for (const [k, el] of [['user', user], ['device', device], ['kind', kind], ['node', node]] as const) if (el.value.trim()) q.set(k, el.value.trim());
      if (cursor) q.set('cursor', cursor);
      try {
        const r = await s.rest<Rest.AdminConnectionList>('GET', `/api/v1/admin/connections?${q}`);
        cursor = r.nextCursor ?? '';
        list.querySelector('.more')?.remove();
        list.append(table(`Open connections${more ? ' (more)' : ''}`, ['Connection', 'User', 'Device', 'Kind', 'Node', 'Address', 'Since', ''], r.items.map((c) => [
          c.id, c.principal.userId ?? '', c.principal.deviceId ?? '', c.principal.appId ? `app ${c.principal.appId}` : c.principal.kind ?? '', c.nodeId, c.remoteAddr ?? '', time(c.connectedAt),
          h('span', { class: 'actions' },
            h('button', { type: 'button', 'aria-label': `Inspect ${c.id}`, onclick: () => void inspect(c.id) }, 'Inspect'),
            h('button', { type: 'button', class: 'danger', 'aria-label': `Disconnect ${c.id}`, onclick: () => void disconnect(c) }, 'Disconnect')),
        ])));
        if (!r.items.length && !more) st.set('No open connection matches.');
        else st.set(`${list.querySelectorAll('tbody tr').length} connections.`);
        if (cursor) list.append(h('button', { type: 'button', class: 'more', onclick: () => void load(true) }, 'More'));
      } catch (e) {
        st.fail(adminError(e) ?? errorText(e));
      }
    };

    const inspect = async (id: string) => {
      clear(detail);
      try {
        const c = await s.rest<Rest.AdminConnectionDetail>('GET', `/api/v1/admin/connections/${encodeURIComponent(id)}`);
        detail.append(h('h3', { tabindex: -1 }, `Connection ${id}`), h('pre', {}, json(c)));
        (detail.firstElementChild as HTMLElement).focus();
      } catch (e) {
        st.fail(e);
      }
    };

    const disconnect = async (c: AdminConnection) => {
      if (!confirm(`Disconnect ${c.principal.userId ?? ''} ${c.principal.deviceId ?? ''} (${c.id})? It is closed with 4011 and does not reconnect by itself.`)) return;
      try {
        await s.rest<Rest.AdminDisconnected>('DELETE', `/api/v1/admin/connections/${encodeURIComponent(c.id)}`);
        st.ok(`Disconnected ${c.id}.`);
        clear(detail);
        await load();
      } catch (e) {
        st.fail(e);
      }
    };

    main.append(
      h('form', { class: 'row filters', onsubmit: (e: Event) => (e.preventDefault(), void load()) },
        field('User', user), field('Device', device), field('Kind', kind), field('Node', node),
        h('button', { type: 'submit' }, 'Filter')),
      st, list, detail,
    );
    void load();
  },
};
