/**
 * The finished image and its facts: seed, size, generation time and cost (the record's
 * metrics, contract §4), the balance after it, a download link and "reuse seed".
 */
import { el } from './dom.js';

export interface ResultParts {
  figure: HTMLElement;
  image: HTMLImageElement;
  info: HTMLElement;
  download: HTMLAnchorElement;
  reuseSeed: HTMLButtonElement;
  note: HTMLElement;
}

export interface ResultFacts {
  request_id: string;
  seed: number;
  width: number;
  height: number;
  format: string;
  generation_time: number | null;
  total_time: number | null;
  cost: number | null;
  remaining_credits: number | null;
}

const secs = (s: number | null) => (s === null ? '—' : `${s.toFixed(2)} s`);

export class ResultView {
  private objectUrl: string | null = null;
  private seed: number | null = null;

  constructor(
    private readonly parts: ResultParts,
    onReuseSeed: (seed: number) => void,
  ) {
    parts.reuseSeed.addEventListener('click', () => {
      if (this.seed !== null) onReuseSeed(this.seed);
    });
  }

  /**
   * Shows `src` (an object URL of the image, which this view then owns, or a data: URL of a
   * thumbnail) with its facts; resolves once the image has decoded.
   */
  async show(src: string, facts: ResultFacts, note = ''): Promise<HTMLImageElement> {
    const { figure, image, info, download, note: noteEl } = this.parts;
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = src.startsWith('blob:') ? src : null;
    this.seed = facts.seed;
    image.src = src;
    image.alt = `generated image, seed ${facts.seed}`;
    await image.decode();
    const rows: Array<[string, string, string]> = [
      ['seed', 'seed', String(facts.seed)],
      ['size', 'size', `${facts.width} × ${facts.height} ${facts.format}`],
      ['time', 'generation time', secs(facts.generation_time)],
      ['total', 'total time', secs(facts.total_time)],
      ['cost', 'cost', facts.cost === null ? '—' : `${facts.cost} credits`],
      ['credits', 'credits left', facts.remaining_credits === null ? '—' : String(facts.remaining_credits)],
      ['request', 'request', facts.request_id],
    ];
    info.replaceChildren(...rows.flatMap(([k, label, value]) => [el('dt', {}, label), el('dd', { id: `info-${k}` }, value)]));
    download.hidden = this.objectUrl === null; // a thumbnail is not the image
    download.href = src;
    download.download = `klein-${facts.seed}.${facts.format === 'jpeg' ? 'jpg' : facts.format}`;
    noteEl.textContent = note;
    noteEl.hidden = note === '';
    figure.hidden = false;
    return image;
  }

  hide(): void {
    this.parts.figure.hidden = true;
  }
}
