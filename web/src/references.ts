/**
 * Reference images (`image_urls`, contract §1): files dropped on the drop zone or chosen
 * with the file picker become data: URIs; links are added as typed. The count limit and
 * the accepted forms are the schema's (`maxItems`, the items' `pattern`), checked here so
 * that a refused file is named at once instead of after an upload.
 */
import { el } from './dom.js';
import type { FieldSpec } from './schema.js';

export interface ReferenceParts {
  zone: HTMLElement;
  picker: HTMLInputElement;
  url: HTMLInputElement;
  addUrl: HTMLButtonElement;
  list: HTMLElement;
  count: HTMLElement;
  /** Where local problems (a wrong file type, too many images) are said. */
  error: HTMLElement;
}

function readAsDataUrl(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => (typeof r.result === 'string' ? resolve(r.result) : reject(new Error('unreadable')));
    r.onerror = () => reject(r.error ?? new Error('unreadable'));
    r.readAsDataURL(file);
  });
}

export class References {
  private readonly items: string[] = [];
  private readonly max: number;
  private readonly pattern: RegExp | null;

  constructor(
    private readonly spec: FieldSpec,
    private readonly parts: ReferenceParts,
  ) {
    this.max = spec.maxItems ?? Infinity;
    this.pattern = spec.pattern ? new RegExp(spec.pattern) : null;
    parts.picker.addEventListener('change', () => {
      void this.addFiles([...(parts.picker.files ?? [])]).finally(() => (parts.picker.value = ''));
    });
    parts.zone.addEventListener('dragover', (e) => {
      e.preventDefault();
      parts.zone.classList.add('over');
    });
    parts.zone.addEventListener('dragleave', () => parts.zone.classList.remove('over'));
    parts.zone.addEventListener('drop', (e) => {
      e.preventDefault();
      parts.zone.classList.remove('over');
      void this.addFiles([...(e.dataTransfer?.files ?? [])]);
    });
    const addUrl = () => {
      const u = parts.url.value.trim();
      if (u && this.add(u, u)) parts.url.value = '';
    };
    parts.addUrl.addEventListener('click', addUrl);
    parts.url.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        addUrl();
      }
    });
    this.render();
  }

  /** The `image_urls` to send. */
  values(): string[] {
    return [...this.items];
  }

  private say(problem: string): void {
    this.parts.error.textContent = problem;
    this.parts.error.hidden = problem === '';
  }

  private async addFiles(files: File[]): Promise<void> {
    for (const f of files) {
      let uri: string;
      try {
        uri = await readAsDataUrl(f);
      } catch {
        this.say(`${f.name} could not be read`);
        continue;
      }
      if (!this.add(uri, f.name)) return;
    }
  }

  /** Adds one entry if the schema allows it; says why not otherwise. */
  private add(value: string, name: string): boolean {
    if (this.items.length >= this.max) {
      this.say(`${this.spec.name} takes at most ${this.max} images; ${name} was not added`);
      return false;
    }
    if (this.pattern && !this.pattern.test(value)) {
      const type = /^data:([^;,]*)/.exec(value)?.[1];
      this.say(type !== undefined ? `${name}: ${type || 'this file type'} is not an image type the server accepts` : `${name} is not an http(s) link`);
      return false;
    }
    this.items.push(value);
    this.say('');
    this.render();
    return true;
  }

  private render(): void {
    const { list, count, zone } = this.parts;
    list.replaceChildren(
      ...this.items.map((src, i) => {
        const remove = el('button', { type: 'button', class: 'remove', 'aria-label': `remove reference ${i + 1}` }, '×');
        remove.addEventListener('click', () => {
          this.items.splice(i, 1);
          this.render();
        });
        return el('li', {}, el('img', { src, alt: `reference ${i + 1}`, loading: 'lazy' }), remove);
      }),
    );
    count.textContent = `${this.items.length} / ${this.max}`;
    zone.classList.toggle('full', this.items.length >= this.max);
  }
}
