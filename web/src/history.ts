/**
 * This browser's results, newest first, in localStorage. Each entry keeps a thumbnail drawn
 * on a canvas (at most THUMB_SIDE pixels a side, JPEG), not the image, so the list stays
 * a few kilobytes per entry; the full image is fetched again from the server while it
 * keeps it (records expire after KLEIN_RETENTION).
 */
import { el } from './dom.js';

const STORAGE = 'klein-playground.history';
const MAX_ENTRIES = 50;
const THUMB_SIDE = 96;

export interface HistoryEntry {
  request_id: string;
  created_at: string;
  prompt: string;
  seed: number;
  width: number;
  height: number;
  format: string;
  cost: number | null;
  generation_time: number | null;
  /** data:image/jpeg;base64,… */
  thumb: string;
}

function isEntry(v: unknown): v is HistoryEntry {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o.request_id === 'string' &&
    typeof o.created_at === 'string' &&
    typeof o.prompt === 'string' &&
    typeof o.seed === 'number' &&
    typeof o.width === 'number' &&
    typeof o.height === 'number' &&
    typeof o.format === 'string' &&
    typeof o.thumb === 'string' &&
    o.thumb.startsWith('data:image/')
  );
}

export function loadHistory(): HistoryEntry[] {
  try {
    const v: unknown = JSON.parse(localStorage.getItem(STORAGE) ?? '[]');
    return Array.isArray(v) ? v.filter(isEntry) : [];
  } catch {
    return [];
  }
}

/** Saves the list, dropping the oldest entries while the browser's quota refuses it. */
function save(entries: HistoryEntry[]): HistoryEntry[] {
  let list = entries.slice(0, MAX_ENTRIES);
  for (;;) {
    try {
      localStorage.setItem(STORAGE, JSON.stringify(list));
      return list;
    } catch (e) {
      if (list.length === 0) throw e;
      list = list.slice(0, -1);
    }
  }
}

export function addToHistory(entry: HistoryEntry): HistoryEntry[] {
  return save([entry, ...loadHistory().filter((e) => e.request_id !== entry.request_id)]);
}

export function clearHistory(): void {
  localStorage.removeItem(STORAGE);
}

/** A small JPEG of a decoded image, for the history. */
export function thumbnail(img: HTMLImageElement): string {
  const scale = Math.min(1, THUMB_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
  const canvas = el('canvas', { width: Math.max(1, Math.round(img.naturalWidth * scale)), height: Math.max(1, Math.round(img.naturalHeight * scale)) });
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('no 2d canvas');
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  return canvas.toDataURL('image/jpeg', 0.75);
}

export function renderHistory(list: HTMLElement, entries: HistoryEntry[], onSelect: (e: HistoryEntry) => void): void {
  list.replaceChildren(
    ...entries.map((e) => {
      const button = el(
        'button',
        { type: 'button', title: `${e.prompt}\nseed ${e.seed} · ${e.width}×${e.height} · ${new Date(e.created_at).toLocaleString()}`, 'data-request-id': e.request_id },
        el('img', { src: e.thumb, alt: e.prompt }),
      );
      button.addEventListener('click', () => onSelect(e));
      return el('li', {}, button);
    }),
  );
}
