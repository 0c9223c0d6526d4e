// Overview: server information and live charts fed by the admin:stats
// channel (docs/api.md, "The statistics stream"): one AdminStats per node
// and second while someone subscribes.
import { Chart } from '../chart.js';
import { errorText, h } from '../dom.js';
import type { Page } from '../page.js';
import type { AdminStats } from '../../../sdk/ts/src/protocol.js';

export const overview: Page = {
  path: '/',
  title: 'Overview',
  async render(main, s, signal) {
    const info = h('dl', { class: 'info' });
    const note = h('p', { class: 'status', role: 'status' }, 'Waiting for the statistics stream…');
    const charts = {
      connections: new Chart('Connections'),
      deliveries: new Chart('Deliveries/s'),
      publications: new Chart('Publications/s'),
      requests: new Chart('Requests/s'),
      rpc: new Chart('RPC calls/s'),
      rpcLatency: new Chart('RPC latency p50 / p99', 'ms'),
      reqLatency: new Chart('Request latency p50 / p99', 'ms'),
    };
    const kinds = h('p', { class: 'kinds' });
    main.append(
      h('section', { 'aria-labelledby': 'ov-server' }, h('h2', { id: 'ov-server' }, 'Server'), info),
      h('section', { 'aria-labelledby': 'ov-live' }, h('h2', { id: 'ov-live' }, 'Live traffic'), note, kinds, h('div', { class: 'charts' }, ...Object.values(charts).map((c) => c.el))),
    );

    s.rest<Record<string, unknown>>('GET', '/api/v1/info')
      .then((i) => {
        const w = s.welcome;
        const rows: [string, unknown][] = [
          ['Name', i.name],
          ['Version', i.version],
          ['Node', i.nodeId],
          ['Protocol', i.protocol],
          ['Lockdown', i.lockdown ? 'on' : 'off'],
          ['Signed in as', s.who],
          ['Scopes', w?.principal.scopes.join(', ')],
        ];
        for (const [k, v] of rows) if (v !== undefined && v !== '') info.append(h('dt', {}, k), h('dd', {}, String(v)));
      })
      .catch((e) => info.append(h('dd', {}, errorText(e))));

    const seen = new Set<string>(); // node + at: history and live may overlap
    const nodes = new Set<string>();
    const add = (st: AdminStats) => {
      if (!st || typeof st !== 'object' || typeof st.nodeId !== 'string') return;
      const key = st.nodeId + '@' + st.at;
      if (seen.has(key)) return;
      seen.add(key);
      if (seen.size > 1000) seen.clear();
      const n = st.nodeId;
      nodes.add(n);
      // One node: the latency lines are p50 and p99; several: per node.
      const q = (x: string) => (nodes.size > 1 ? `${n} ${x}` : x);
      charts.connections.push(n, st.connections);
      charts.deliveries.push(n, st.deliveriesPerSec);
      charts.publications.push(n, st.publicationsPerSec);
      charts.requests.push(n, st.requestsPerSec);
      charts.rpc.push(n, st.rpcCallsPerSec);
      charts.rpcLatency.push(q('p50'), st.rpcLatency?.p50Ms ?? 0);
      charts.rpcLatency.push(q('p99'), st.rpcLatency?.p99Ms ?? 0);
      charts.reqLatency.push(q('p50'), st.requestLatency?.p50Ms ?? 0);
      charts.reqLatency.push(q('p99'), st.requestLatency?.p99Ms ?? 0);
      const byKind = Object.entries(st.connectionsByKind ?? {}).filter(([, v]) => v > 0);
      kinds.textContent = byKind.length ? `Connections by kind (${n}): ` + byKind.map(([k, v]) => `${k} ${v}`).join(', ') : '';
      note.textContent = `Live: last update ${new Date(st.at).toLocaleTimeString()} from ${n}`;
      note.className = 'status ok';
    };
    try {
      const sub = await s.client.subscribe<AdminStats>('admin:stats', (p) => add(p.data), { signal });
      signal.addEventListener('abort', () => void sub.unsubscribe().catch(() => {}));
      const hist = await s.client.history('admin:stats', { limit: 60 }).catch(() => undefined);
      for (const p of hist?.publications ?? []) add(p.data as AdminStats);
    } catch (e) {
      if (signal.aborted) return;
      note.className = 'status err';
      const code = (e as { code?: string }).code;
      note.textContent =
        code === 'forbidden'
          ? 'The live charts need a token with scope admin.'
          : code === 'not_found'
            ? 'This server does not publish the statistics stream (admin:stats).'
            : `The statistics stream is unavailable: ${errorText(e)}`;
    }
  },
};
