// Accounts and devices: the signed-in account's devices (GET/DELETE
// /api/v1/devices), and, with scope admin, every account's
// (/api/v1/admin/accounts...). Revoking closes the device's connection
// (4003) and refuses its tokens from then on.
import { clear, errorText, h, status, table, time } from '../dom.js';
import { adminError, type Page } from '../page.js';
import type { Rest } from '../../../sdk/ts/src/protocol.js';

type Device = Rest.Device;

export const accounts: Page = {
  path: '/accounts',
  title: 'Accounts',
  render(main, s) {
    const st = status();
    const mine = h('div', {});
    const all = h('div', {});
    const theirs = h('div', {});

    const devicesTable = (caption: string, items: Device[], revokePath: (d: Device) => string, reload: () => void) =>
      table(caption, ['Device', 'Name', 'Kind', 'Created', 'Last seen', 'State', ''], items.map((d) => [
        d.id, d.name, d.kind, time(d.createdAt), time(d.lastSeenAt), d.revokedAt ? `revoked ${time(d.revokedAt)}` : 'active',
        d.revokedAt
          ? ''
          : h('button', {
              type: 'button', class: 'danger', 'aria-label': `Revoke ${d.name || d.id}`,
              onclick: async () => {
                if (!confirm(`Revoke device ${d.name || d.id}? Its connection closes and its tokens stop working.`)) return;
                try {
                  await s.rest('DELETE', revokePath(d));
                  st.ok(`Revoked ${d.name || d.id}.`);
                  reload();
                } catch (e) {
                  st.fail(e);
                }
              },
            }, 'Revoke'),
      ]));

    const loadMine = async () => {
      clear(mine);
      try {
        const r = await s.rest<Rest.DeviceList>('GET', '/api/v1/devices');
        mine.append(r.items.length ? devicesTable(`Devices of account ${s.welcome?.principal.userId ?? ''}`, r.items, (d) => `/api/v1/devices/${encodeURIComponent(d.id)}`, () => void loadMine()) : h('p', {}, 'This account has no devices (a token minted by junction token is not a device of an account).'));
      } catch (e) {
        mine.append(h('p', { class: 'status muted' }, errorText(e)));
      }
    };

    const loadAccount = async (id: string) => {
      clear(theirs);
      try {
        const r = await s.rest<Rest.DeviceList>('GET', `/api/v1/admin/accounts/${encodeURIComponent(id)}/devices`);
        theirs.append(devicesTable(`Devices of account ${id}`, r.items, (d) => `/api/v1/admin/accounts/${encodeURIComponent(id)}/devices/${encodeURIComponent(d.id)}`, () => void loadAccount(id)));
        theirs.querySelector('caption')?.setAttribute('tabindex', '-1');
        (theirs.querySelector('caption') as HTMLElement | null)?.focus();
      } catch (e) {
        theirs.append(h('p', { class: 'status err' }, errorText(e)));
      }
    };

    const loadAll = async () => {
      clear(all);
      try {
        const r = await s.rest<Rest.AdminAccountList>('GET', '/api/v1/admin/accounts?limit=100');
        all.append(r.items.length ? table('Accounts, newest first', ['Account', 'Created', ''], r.items.map((a) => [
          a.id, time(a.createdAt), h('button', { type: 'button', onclick: () => void loadAccount(a.id) }, 'Devices'),
        ])) : h('p', {}, 'No accounts yet.'));
      } catch (e) {
        all.append(h('p', { class: 'status muted' }, adminError(e) ?? errorText(e)));
      }
    };

    main.append(
      st,
      h('section', { 'aria-labelledby': 'acc-mine' }, h('h2', { id: 'acc-mine' }, 'This account'), mine),
      h('section', { 'aria-labelledby': 'acc-all' }, h('h2', { id: 'acc-all' }, 'All accounts'), all, theirs),
    );
    void loadMine();
    void loadAll();
  },
};
