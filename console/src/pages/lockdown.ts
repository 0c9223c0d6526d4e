// Lockdown: the kill switch (GET/POST /api/v1/admin/lockdown). On, the
// server refuses every client outside loopback, private LAN ranges and the
// Tailscale range, and closes their live connections (4010).
import { h, status } from '../dom.js';
import { adminError, type Page } from '../page.js';

export const lockdown: Page = {
  path: '/lockdown',
  title: 'Lockdown',
  admin: true,
  async render(main, s) {
    const st = status();
    const sw = h('button', { type: 'button', role: 'switch', id: 'lockdown-switch', 'aria-checked': 'false', class: 'switch', disabled: true },
      h('span', { class: 'knob', 'aria-hidden': 'true' }), h('span', { class: 'switch-label' }, 'Lockdown'));
    const state = h('p', { class: 'lockdown-state', id: 'lockdown-state' }, 'Loading…');
    const show = (on: boolean) => {
      sw.setAttribute('aria-checked', String(on));
      sw.disabled = false;
      state.textContent = on ? 'Lockdown is ON: only loopback, LAN and Tailscale addresses may connect.' : 'Lockdown is off: every address the server listens to may connect.';
      state.className = 'lockdown-state ' + (on ? 'on' : 'off');
    };
    sw.addEventListener('click', async () => {
      const on = sw.getAttribute('aria-checked') !== 'true';
      if (on && !confirm('Turn lockdown on? Clients outside local networks are refused and disconnected.')) return;
      sw.disabled = true;
      try {
        const r = await s.rest<{ enabled: boolean }>('POST', '/api/v1/admin/lockdown', { enabled: on });
        show(r.enabled);
        st.ok(r.enabled ? 'Lockdown turned on.' : 'Lockdown turned off.');
      } catch (e) {
        sw.disabled = false;
        st.fail(adminError(e) ?? e);
      }
    });
    main.append(
      h('p', {}, 'The kill switch: when it is on, the server answers 503 to any address outside loopback, private LAN ranges and the Tailscale range, before authentication, and closes such connections that are open. It survives a restart until turned off.'),
      sw, state, st,
    );
    try {
      const r = await s.rest<{ enabled: boolean }>('GET', '/api/v1/admin/lockdown');
      show(r.enabled);
    } catch (e) {
      state.textContent = '';
      st.fail(adminError(e) ?? e);
    }
  },
};
