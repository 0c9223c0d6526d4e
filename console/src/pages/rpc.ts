// RPC: the machines serving methods (admin), their methods (rpc.list), and
// a call with JSON params, progress and cancel (rpc.call through the SDK).
import { clear, errorText, field, h, json, status, table } from '../dom.js';
import { adminError, type Page } from '../page.js';
import type { Rest } from '../../../sdk/ts/src/protocol.js';

export const rpc: Page = {
  path: '/rpc',
  title: 'RPC',
  render(main, s, signal) {
    const machines = h('div', { class: 'machines' });
    const device = h('input', { id: 'rpc-device', name: 'device', required: true, placeholder: 'mac-1', autocomplete: 'off', spellcheck: 'false' });
    const method = h('input', { id: 'rpc-method', name: 'method', required: true, list: 'rpc-methods', autocomplete: 'off', spellcheck: 'false' });
    const methods = h('datalist', { id: 'rpc-methods' });
    const params = h('textarea', { id: 'rpc-params', rows: 4, spellcheck: 'false' });
    params.value = '{}';
    const timeout = h('input', { id: 'rpc-timeout', type: 'number', min: 0, step: 1000, value: 30000 });
    const st = status();
    const progress = h('ol', { class: 'log', id: 'rpc-progress', 'aria-label': 'Progress', 'aria-live': 'polite' });
    const result = h('pre', { id: 'rpc-result', tabindex: 0, 'aria-label': 'Result' });
    const cancel = h('button', { type: 'button', disabled: true }, 'Cancel');
    let ac: AbortController | undefined;
    signal.addEventListener('abort', () => ac?.abort());

    const pick = (id: string, ms: string[]) => {
      device.value = id;
      fill(ms);
      method.focus();
    };
    const fill = (ms: string[]) => {
      clear(methods);
      for (const m of ms) methods.append(h('option', { value: m }));
      if (ms.length && !method.value) method.value = ms[0] ?? '';
    };

    const loadMachines = async () => {
      clear(machines);
      try {
        const r = await s.rest<Rest.AdminMachineList>('GET', '/api/v1/admin/machines?limit=100');
        if (!r.items.length) machines.append(h('p', {}, 'No machine serves methods on this node.'));
        else
          machines.append(table('Machines online', ['Device', 'User', 'Kind', 'Node', 'Methods', ''], r.items.map((m) => [
            m.deviceId, m.userId, m.kind ?? '', m.nodeId, m.methods.join(', '),
            h('button', { type: 'button', onclick: () => pick(m.deviceId, m.methods) }, 'Choose'),
          ])));
      } catch (e) {
        machines.append(h('p', { class: 'status muted' }, adminError(e) ?? errorText(e)));
      }
    };

    const list = async () => {
      try {
        const r = await s.client.rpcList(device.value.trim());
        fill(r.methods);
        st.ok(`${r.deviceId} serves: ${r.methods.join(', ') || 'nothing you may call'}.`);
      } catch (e) {
        st.fail(e);
      }
    };

    const call = async () => {
      let p: unknown;
      try {
        p = JSON.parse(params.value || '{}');
      } catch {
        return st.fail('the params are not valid JSON');
      }
      if (!p || typeof p !== 'object' || Array.isArray(p)) return st.fail('the params must be a JSON object');
      ac?.abort();
      ac = new AbortController();
      clear(progress);
      result.textContent = '';
      cancel.disabled = false;
      st.set(`Calling ${method.value} on ${device.value}…`);
      const started = performance.now();
      try {
        const r = await s.client.callDevice(device.value.trim(), method.value.trim(), p as object, {
          onProgress: (d) => progress.append(h('li', {}, JSON.stringify(d))),
          timeoutMs: Number(timeout.value) || undefined,
          signal: ac.signal,
        });
        result.textContent = json(r);
        st.ok(`Answered in ${Math.round(performance.now() - started)} ms.`);
      } catch (e) {
        st.fail(e);
      } finally {
        cancel.disabled = true;
      }
    };
    cancel.addEventListener('click', () => ac?.abort());

    main.append(
      h('section', { 'aria-labelledby': 'rpc-online' }, h('h2', { id: 'rpc-online' }, 'Machines online'),
        h('button', { type: 'button', onclick: () => void loadMachines() }, 'Refresh'), machines),
      h('section', { 'aria-labelledby': 'rpc-call' }, h('h2', { id: 'rpc-call' }, 'Call a method'),
        h('form', { class: 'stack', onsubmit: (e: Event) => (e.preventDefault(), void call()) },
          h('div', { class: 'row' }, field('Device', device), h('button', { type: 'button', onclick: () => void list() }, 'List methods')),
          field('Method', method), methods,
          field('Params (JSON object)', params),
          field('Timeout (ms)', timeout),
          h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Call'), cancel)),
        st, h('h3', {}, 'Progress'), progress, h('h3', {}, 'Result'), result),
    );
    void loadMachines();
  },
};
