/**
 * The parameter controls, made from the body schema (schema.ts): a number input with the
 * schema's min, max and step for integers and numbers, a select of the schema's choices, a
 * checkbox for booleans, a text box for strings, each starting at the schema's default with
 * its range and default written beside it. `values()` reads them back into a request body.
 */
import { el } from './dom.js';
import type { FieldErrors } from './field-errors.js';
import type { FieldSpec } from './schema.js';

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

/** Strings longer than this get a multi-line box (the prompts: 10,000 characters). */
const TEXTAREA_FROM = 200;

const show = (n: number) => (n === Number.MAX_SAFE_INTEGER ? '2^53−1' : String(n));

/** "1 to 100 · ×16 · default 20", from the schema. */
function hintOf(f: FieldSpec): string {
  const parts: string[] = [];
  if (f.minimum !== undefined && f.maximum !== undefined) parts.push(`${show(f.minimum)} to ${show(f.maximum)}`);
  if (f.multipleOf !== undefined) parts.push(`×${f.multipleOf}`);
  if (f.default !== undefined && f.kind !== 'boolean' && f.kind !== 'text') parts.push(`default ${String(f.default)}`);
  else if (f.default === undefined && !f.required && f.kind !== 'text') parts.push('optional');
  return parts.join(' · ');
}

function controlOf(f: FieldSpec): Control {
  const id = `f-${f.name}`;
  const common = { id, name: f.name, title: f.description };
  switch (f.kind) {
    case 'integer':
    case 'number':
      return el('input', {
        ...common,
        type: 'number',
        inputmode: f.kind === 'integer' ? 'numeric' : 'decimal',
        min: f.minimum,
        max: f.maximum,
        step: f.multipleOf ?? (f.kind === 'integer' ? 1 : 'any'),
      });
    case 'choice':
      return el('select', common, ...(f.choices ?? []).map((c) => el('option', { value: c }, c)));
    case 'boolean':
      return el('input', { ...common, type: 'checkbox' });
    case 'text':
      return f.maxLength !== undefined && f.maxLength > TEXTAREA_FROM
        ? el('textarea', { ...common, rows: 2, maxlength: f.maxLength, spellcheck: 'true' })
        : el('input', { ...common, type: 'text', maxlength: f.maxLength });
    case 'list':
      throw new Error(`field ${f.name}: lists have their own control`);
  }
}

export class ParamsForm {
  private readonly controls = new Map<string, { spec: FieldSpec; control: Control }>();

  /** Renders `fields` into `container` (each with its error place, registered in `errors`). */
  constructor(container: HTMLElement, fields: FieldSpec[], errors: FieldErrors) {
    for (const f of fields) {
      const control = controlOf(f);
      const error = el('p');
      errors.register(f.name, error, control);
      const hint = hintOf(f);
      const label = el('label', { for: control.id }, el('span', { class: 'name' }, f.name), ...(hint ? [el('small', {}, hint)] : []));
      const wrap = el('div', { class: `field field-${f.kind}${control instanceof HTMLTextAreaElement ? ' wide' : ''}`, 'data-field': f.name });
      if (f.kind === 'boolean') wrap.append(el('div', { class: 'check' }, control, label), error);
      else wrap.append(label, control, error);
      container.append(wrap);
      this.controls.set(f.name, { spec: f, control });
    }
    this.reset();
  }

  /** The control of a field (main.ts adds buttons beside some). */
  control(name: string): Control | undefined {
    return this.controls.get(name)?.control;
  }

  /** Every control back to the schema's default (empty where the schema has none). */
  reset(): void {
    for (const { spec, control } of this.controls.values()) {
      if (control instanceof HTMLInputElement && control.type === 'checkbox') control.checked = spec.default === true;
      else control.value = spec.default === undefined ? '' : String(spec.default);
    }
  }

  /**
   * The fields whose control no longer holds the schema's default, as the control holds
   * them: what the user chose, kept when the form is rebuilt for another model.
   */
  edited(): Map<string, string | boolean> {
    const out = new Map<string, string | boolean>();
    for (const [name, { spec, control }] of this.controls) {
      if (control instanceof HTMLInputElement && control.type === 'checkbox') {
        if (control.checked !== (spec.default === true)) out.set(name, control.checked);
      } else if (control.value !== (spec.default === undefined ? '' : String(spec.default))) out.set(name, control.value);
    }
    return out;
  }

  set(name: string, value: string | number | boolean): void {
    const c = this.controls.get(name)?.control;
    if (!c) return;
    if (c instanceof HTMLInputElement && c.type === 'checkbox') c.checked = value === true;
    else c.value = String(value);
  }

  /**
   * The body fields, as typed JSON values. An empty number box leaves its field out (the
   * server's default applies; width/height are optional); the server checks everything
   * else, so its messages are the ones shown. A number box holding text the browser cannot
   * parse is the one problem caught here, since the browser hides such text from scripts.
   */
  values(): { body: Record<string, unknown>; problems: Array<{ field: string; message: string }> } {
    const body: Record<string, unknown> = {};
    const problems: Array<{ field: string; message: string }> = [];
    for (const [name, { spec, control }] of this.controls) {
      if (control instanceof HTMLInputElement && control.type === 'checkbox') body[name] = control.checked;
      else if (spec.kind === 'integer' || spec.kind === 'number') {
        if (control instanceof HTMLInputElement && control.validity.badInput) problems.push({ field: name, message: 'is not a number' });
        else if (control.value.trim() !== '') body[name] = Number(control.value);
      } else body[name] = control.value;
    }
    return { body, problems };
  }
}
