/**
 * Field errors shown next to their fields. The server names fields as its `details` do
 * (contract §2): `steps`, `image_urls[2]`, `width`; an entry of a list belongs to the
 * list's place on the page. Errors for fields the page has no place for are returned to
 * the caller, which shows them in the message area.
 */
import type { FieldError } from './api.js';

interface Target {
  /** Where the message goes. */
  error: HTMLElement;
  /** The control to mark invalid and focus, if any. */
  control?: HTMLElement;
}

export class FieldErrors {
  private readonly targets = new Map<string, Target>();

  register(field: string, error: HTMLElement, control?: HTMLElement): void {
    error.classList.add('field-error');
    error.id ||= `err-${field}`;
    error.hidden = true;
    error.setAttribute('role', 'alert');
    if (control) control.setAttribute('aria-describedby', error.id);
    this.targets.set(field, control ? { error, control } : { error });
  }

  /** Removes a field's place (a list row taken off the page), hiding its message first. */
  forget(field: string): void {
    this.clear(field);
    this.targets.delete(field);
  }

  /** Shows each error next to its field; focuses the first; returns those with no place. */
  show(errors: FieldError[]): FieldError[] {
    const unplaced: FieldError[] = [];
    const texts = new Map<Target, string[]>();
    for (const e of errors) {
      const t = this.targets.get(e.field) ?? this.targets.get(e.field.replace(/[[.].*$/, ''));
      if (!t) {
        unplaced.push(e);
        continue;
      }
      // A list entry keeps its index in the message ("image_urls[1]: …"); a field does not repeat its name.
      const text = this.targets.has(e.field) ? e.message : `${e.field}: ${e.message}`;
      texts.set(t, [...(texts.get(t) ?? []), text]);
    }
    let first: HTMLElement | undefined;
    for (const [t, lines] of texts) {
      t.error.textContent = lines.join('; ');
      t.error.hidden = false;
      t.control?.setAttribute('aria-invalid', 'true');
      first ??= t.control;
    }
    first?.focus();
    return unplaced;
  }

  /** Hides every message, or only `field`'s. */
  clear(field?: string): void {
    const targets = field === undefined ? [...this.targets.values()] : [this.targets.get(field)];
    for (const t of targets) {
      if (!t) continue;
      t.error.hidden = true;
      t.error.textContent = '';
      t.control?.removeAttribute('aria-invalid');
    }
  }
}
