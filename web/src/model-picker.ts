/**
 * The model picker (contract §6: one `POST /v2/<slug>` per served model): one option per
 * model the document describes (schema.ts), the first served model chosen unless this
 * browser chose another served one before (kept in localStorage, as the key is). Beside it,
 * what the document says of the chosen model: its variant and defaults.
 */
import { el } from './dom.js';
import type { BodySpec } from './schema.js';

const STORAGE = 'klein-playground.model';

export interface PickerParts {
  select: HTMLSelectElement;
  /** The chosen model's variant and defaults. */
  about: HTMLElement;
}

export class ModelPicker {
  private readonly specs: ReadonlyMap<string, BodySpec>;

  /** `specs` is non-empty, the first served model first; `onChange` runs after each new choice. */
  constructor(
    private readonly parts: PickerParts,
    specs: readonly BodySpec[],
    onChange: (spec: BodySpec) => void,
  ) {
    this.specs = new Map(specs.map((s) => [s.model, s]));
    parts.select.replaceChildren(...specs.map((s) => el('option', { value: s.model }, s.model)));
    const remembered = localStorage.getItem(STORAGE);
    parts.select.value = remembered !== null && this.specs.has(remembered) ? remembered : specs[0]!.model;
    this.showAbout();
    parts.select.addEventListener('change', () => {
      localStorage.setItem(STORAGE, parts.select.value);
      this.showAbout();
      onChange(this.current());
    });
  }

  current(): BodySpec {
    const spec = this.specs.get(this.parts.select.value);
    if (!spec) throw new Error(`no served model ${this.parts.select.value}`);
    return spec;
  }

  private showAbout(): void {
    this.parts.about.textContent = this.current().about;
  }
}
