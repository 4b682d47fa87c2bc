/**
 * The API key: kept in this browser's localStorage (it never leaves the browser except as
 * the `x-api-key` header to this server), checked against GET /v1/get-user-credits when
 * entered, which also shows the balance.
 */
import { ApiFailure, credits } from './api.js';
import type { FieldErrors } from './field-errors.js';
import { describeFailure } from './messages.js';

const STORAGE = 'klein-playground.api-key';
/** The key's place among the field errors (it is the request header of that name). */
export const KEY_FIELD = 'x-api-key';

export interface KeyParts {
  input: HTMLInputElement;
  toggle: HTMLButtonElement;
  /** The balance line. */
  credits: HTMLElement;
}

export class ApiKey {
  constructor(
    private readonly parts: KeyParts,
    private readonly errors: FieldErrors,
  ) {
    parts.input.value = localStorage.getItem(STORAGE) ?? '';
    parts.input.addEventListener('input', () => {
      const k = parts.input.value.trim();
      if (k) localStorage.setItem(STORAGE, k);
      else localStorage.removeItem(STORAGE);
    });
    parts.input.addEventListener('change', () => void this.refresh());
    parts.toggle.addEventListener('click', () => {
      const hidden = parts.input.type === 'password';
      parts.input.type = hidden ? 'text' : 'password';
      parts.toggle.textContent = hidden ? 'hide' : 'show';
    });
    if (this.value()) void this.refresh();
  }

  value(): string {
    return this.parts.input.value.trim();
  }

  /** Shows the balance; a refused key is said beside the field. */
  async refresh(): Promise<void> {
    const key = this.value();
    this.errors.clear(KEY_FIELD);
    if (!key) {
      this.parts.credits.textContent = '';
      return;
    }
    try {
      this.showCredits(await credits(key));
    } catch (e) {
      this.parts.credits.textContent = '';
      if (e instanceof ApiFailure) this.refused(describeFailure(e));
    }
  }

  showCredits(n: number): void {
    this.parts.credits.textContent = `${n} credits left`;
  }

  /** A 401 (or 403) is about the key: said next to it. */
  refused(text: string): void {
    this.errors.show([{ field: KEY_FIELD, message: text }]);
  }
}
