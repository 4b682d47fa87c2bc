/**
 * Live progress of one request, from its event stream: the queue position, a step/total
 * bar, and the low-resolution preview the server makes from the latents at each step
 * (`GET /v2/requests/{id}/events?preview=true`, contract §4).
 */
import type { Schemas } from './api-types.js';

export interface ProgressParts {
  box: HTMLElement;
  bar: HTMLProgressElement;
  text: HTMLElement;
  preview: HTMLImageElement;
}

/** The preview of a `progress` event. */
export type Preview = NonNullable<Schemas['ProgressEvent']['preview']>;

export class ProgressView {
  constructor(private readonly parts: ProgressParts) {}

  start(): void {
    const { box, bar, text, preview } = this.parts;
    box.hidden = false;
    bar.max = 1;
    bar.removeAttribute('value'); // indeterminate until the first step
    text.textContent = 'Submitting…';
    preview.hidden = true;
    preview.removeAttribute('src');
  }

  queued(position: number): void {
    this.parts.text.textContent = `Queued: position ${position}`;
  }

  step(step: number, total: number, preview: Preview | undefined): void {
    const { bar, text, preview: img } = this.parts;
    bar.max = total;
    bar.value = step;
    text.textContent = `Step ${step} / ${total}`;
    if (preview) {
      img.src = `data:image/png;base64,${preview.png_base64}`;
      img.dataset.size = `${preview.width}x${preview.height}`;
      img.hidden = false;
    }
  }

  /** The request ended: the bar stays as it was, with `text` beside it. */
  end(text: string, keepPreview: boolean): void {
    this.parts.text.textContent = text;
    if (!keepPreview) this.parts.preview.hidden = true;
  }

  hide(): void {
    this.parts.box.hidden = true;
  }
}
