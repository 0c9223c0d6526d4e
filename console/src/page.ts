// page.ts: what a console page is.
import type { Session } from './session.js';

/** Page renders into main; signal aborts when the user leaves it (unsubscribe there). */
export interface Page {
  path: string;
  title: string;
  /** admin marks pages that need scope admin (shown to others with a note). */
  admin?: boolean;
  render(main: HTMLElement, s: Session, signal: AbortSignal): void | Promise<void>;
}

/** adminError turns a refused admin call into a sentence an operator can act on. */
export function adminError(e: unknown): string | undefined {
  const code = (e as { code?: string }).code;
  const msg = (e as { message?: string }).message ?? '';
  if (code === 'forbidden') return 'This page needs a token with scope admin (junction token --scope admin ...).';
  if (code === 'not_found' && msg.startsWith('no such endpoint')) return 'This server does not offer this admin endpoint (it needs a newer junction).';
  return undefined;
}
