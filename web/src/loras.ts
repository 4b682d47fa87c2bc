/**
 * LoRA adapters (`loras`, contract §7): up to the schema's `maxItems` rows, each a path (an
 * http(s) URL of a .safetensors file, a hub repo id `owner/name[@rev]`, or a file name in
 * the server's KLEIN_LORA_DIR) and a scale. The limits and the default scale are the schema's
 * (the items' `path` and `scale`); the server checks each file, and its errors name the row
 * (`loras[1].path`), so each row's path and scale are registered under those names and
 * renamed when a row above is removed.
 */
import { el } from './dom.js';
import type { FieldError } from './api.js';
import type { FieldErrors } from './field-errors.js';
import type { FieldSpec } from './schema.js';

export interface LoraParts {
  list: HTMLElement;
  add: HTMLButtonElement;
  count: HTMLElement;
  /** Where the scale's range and default are said. */
  hint: HTMLElement;
}

/** The scale box's step: finer than people tune adapters, coarse enough for the arrows to be useful. */
const SCALE_STEP = 0.05;

interface Row {
  item: HTMLLIElement;
  path: HTMLInputElement;
  scale: HTMLInputElement;
  remove: HTMLButtonElement;
  pathError: HTMLElement;
  scaleError: HTMLElement;
}

export type Lora = { path: string; scale?: number };

export class Loras {
  private readonly rows: Row[] = [];
  /** How many indexes have their names registered in `errors`. */
  private registered = 0;
  private readonly max: number;
  private readonly path: FieldSpec;
  private readonly scale: FieldSpec;

  constructor(
    private readonly spec: FieldSpec,
    private readonly parts: LoraParts,
    private readonly errors: FieldErrors,
  ) {
    const item = (n: string) => {
      const f = spec.itemFields?.find((x) => x.name === n);
      if (!f) throw new Error(`the request schema's ${spec.name} items have no ${n}`);
      return f;
    };
    this.path = item('path');
    this.scale = item('scale');
    this.max = spec.maxItems ?? Infinity;
    const { minimum, maximum } = this.scale;
    parts.hint.textContent = `scale ${minimum ?? ''} to ${maximum ?? ''}${this.scale.default !== undefined ? `, default ${String(this.scale.default)}` : ''}`;
    parts.add.addEventListener('click', () => {
      if (this.rows.length < this.max) this.rows.push(this.row());
      this.renumber();
      this.rows.at(-1)?.path.focus();
    });
    this.renumber();
  }

  private row(): Row {
    const path = el('input', { type: 'text', maxlength: this.path.maxLength, autocomplete: 'off', spellcheck: 'false', placeholder: 'https://…/x.safetensors, owner/repo or a file name', title: this.path.description });
    const scale = el('input', { type: 'number', inputmode: 'decimal', min: this.scale.minimum, max: this.scale.maximum, step: SCALE_STEP, title: this.scale.description });
    scale.value = this.scale.default === undefined ? '' : String(this.scale.default);
    const remove = el('button', { type: 'button', class: 'remove' }, '×');
    const pathError = el('p');
    const scaleError = el('p');
    const item = el('li', {}, path, scale, remove, pathError, scaleError);
    const row = { item, path, scale, remove, pathError, scaleError };
    remove.addEventListener('click', () => {
      this.rows.splice(this.rows.indexOf(row), 1);
      item.remove();
      this.renumber();
      (this.rows[0]?.path ?? this.parts.add).focus();
    });
    return row;
  }

  /**
   * Puts the rows on the page in order, each under its index (ids, labels, the names the
   * server's errors use); a message shown against an index belonged to the rows as they
   * were, so every message goes.
   */
  private renumber(): void {
    const name = this.spec.name;
    for (let i = 0; i < this.registered; i++) {
      this.errors.forget(`${name}[${i}].path`);
      this.errors.forget(`${name}[${i}].scale`);
    }
    this.registered = this.rows.length;
    this.rows.forEach((r, i) => {
      r.path.id = `lora-path-${i}`;
      r.scale.id = `lora-scale-${i}`;
      r.pathError.id = `lora-path-error-${i}`;
      r.scaleError.id = `lora-scale-error-${i}`;
      r.path.setAttribute('aria-label', `LoRA ${i + 1}: URL, repo id or file name`);
      r.scale.setAttribute('aria-label', `LoRA ${i + 1}: scale`);
      r.remove.setAttribute('aria-label', `remove LoRA ${i + 1}`);
      this.errors.register(`${name}[${i}].path`, r.pathError, r.path);
      this.errors.register(`${name}[${i}].scale`, r.scaleError, r.scale);
    });
    this.parts.list.replaceChildren(...this.rows.map((r) => r.item));
    this.parts.count.textContent = `${this.rows.length} / ${this.max}`;
    this.parts.add.disabled = this.rows.length >= this.max;
  }

  /**
   * The `loras` to send, one per row. A row without a path, or a scale the browser cannot
   * read as a number (it hides such text from scripts), is a problem said beside it here,
   * since a skipped row would shift the indexes the server's errors name. An empty scale
   * box leaves the scale out: the server's default applies.
   */
  values(): { loras: Lora[]; problems: FieldError[] } {
    const loras: Lora[] = [];
    const problems: FieldError[] = [];
    this.rows.forEach((r, i) => {
      const path = r.path.value.trim();
      if (path === '') problems.push({ field: `${this.spec.name}[${i}].path`, message: 'enter a URL, a repo id or a file name, or remove this adapter' });
      if (r.scale.validity.badInput) problems.push({ field: `${this.spec.name}[${i}].scale`, message: 'is not a number' });
      loras.push(r.scale.value.trim() === '' ? { path } : { path, scale: Number(r.scale.value) });
    });
    return { loras, problems };
  }
}
