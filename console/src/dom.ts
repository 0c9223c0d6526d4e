// dom.ts: a small element builder. Text is always set as text (never
// parsed as HTML), so nothing a server or a publication carries can inject
// markup into the console.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | null | undefined>;

/** h creates an element with attributes (on* keys add listeners; false/null skip) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, ...children);
  return el;
}

/** append adds children (strings as text nodes) to el. */
export function append(el: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
}

/** clear removes every child of el. */
export function clear(el: Node): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** field is a labelled form control. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || (control.id = 'f-' + Math.random().toString(36).slice(2, 9));
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint ? h('small', {}, hint) : null);
}

/** status is a live region for the outcome of an action. */
export function status(): HTMLElement & { ok(msg: string): void; fail(err: unknown): void; set(msg: string): void } {
  const el = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' }) as unknown as HTMLElement & {
    ok(msg: string): void;
    fail(err: unknown): void;
    set(msg: string): void;
  };
  el.set = (msg) => {
    el.className = 'status';
    el.textContent = msg;
  };
  el.ok = (msg) => {
    el.className = 'status ok';
    el.textContent = msg;
  };
  el.fail = (err) => {
    el.className = 'status err';
    el.textContent = errorText(err);
  };
  return el;
}

/** errorText is an error as one line: its protocol code, when it has one, and message. */
export function errorText(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string' && typeof e.message === 'string') return `${e.code}: ${e.message}`;
    if (typeof e.message === 'string') return e.message;
  }
  return String(err);
}

/** json formats a value for a <pre>. */
export function json(v: unknown): string {
  return JSON.stringify(v, null, 2) ?? String(v);
}

/** time formats a timestamp (ms or ISO string) as a local time of day. */
export function time(t: number | string | undefined): string {
  if (t === undefined || t === '') return '';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString();
}

/** table builds a table with a caption, headers and rows (cells are children). */
export function table(caption: string, headers: string[], rows: Child[][]): HTMLTableElement {
  return h(
    'table',
    {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c))))),
  );
}
