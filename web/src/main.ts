/**
 * The playground page: builds the form from /openapi.json, for the model chosen in the
 * picker (each served model has its own route and defaults, contract §6), then runs each
 * generation through the asynchronous API (contract §4):
 *
 *   POST /v2/<slug>                       → 4xx/5xx: said in words, field errors beside fields
 *   GET  /v2/requests/{id}/events?preview → queued, progress (bar + preview), then the end
 *        (the browser's EventSource on the signed events_url, resumed after a drop: sse.ts)
 *   GET  /v2/requests/{id}/output         → the image; GET /v1/get-user-credits → the balance
 *
 * and keeps a history of this browser's results.
 */
import { ApiFailure, NetworkFailure, TERMINAL, cancel, credits, eventsUrl, getRecord, output, recordOf, submit, type RequestRecord, type Submitted } from './api.js';
import { followEvents } from './sse.js';
import { byId, el } from './dom.js';
import { FieldErrors } from './field-errors.js';
import { ParamsForm } from './form.js';
import { addToHistory, clearHistory, loadHistory, renderHistory, thumbnail, type HistoryEntry } from './history.js';
import { ApiKey, KEY_FIELD } from './key.js';
import { describeEnd, describeFailure } from './messages.js';
import { ProgressView, type Preview } from './progress-view.js';
import { References } from './references.js';
import { Loras } from './loras.js';
import { ResultView, type ResultFacts } from './result-view.js';
import { ModelPicker } from './model-picker.js';
import { loadBodySpecs, type BodySpec, type FieldSpec } from './schema.js';

/**
 * Body fields with a place of their own on the page (the prompt, the references, the LoRA
 * rows); every other field of the schema gets a
 * generated control. `base64` and `webhook_url` are for programs: the page always fetches
 * the image from the output route and watches the event stream itself.
 */
const PROMPT = 'prompt';
const IMAGES = 'image_urls';
const LORAS = 'loras';
const NOT_SHOWN = new Set(['base64', 'webhook_url']);

const message = byId('message', HTMLElement);
function say(kind: 'error' | 'info' | 'ok', text: string): void {
  message.textContent = text;
  message.className = `message ${kind}`;
  message.hidden = false;
}
function unsay(): void {
  message.textContent = '';
  message.hidden = true;
}

const errors = new FieldErrors();
errors.register(KEY_FIELD, byId('err-api-key', HTMLElement), byId('api-key', HTMLInputElement));
const key = new ApiKey({ input: byId('api-key', HTMLInputElement), toggle: byId('key-toggle', HTMLButtonElement), credits: byId('credits', HTMLElement) }, errors);
const progress = new ProgressView({ box: byId('progress-box', HTMLElement), bar: byId('progress', HTMLProgressElement), text: byId('progress-text', HTMLElement), preview: byId('preview', HTMLImageElement) });
const generateButton = byId('generate', HTMLButtonElement);
const cancelButton = byId('cancel', HTMLButtonElement);

function fieldOf(spec: BodySpec, name: string): FieldSpec {
  const f = spec.fields.find((x) => x.name === name);
  if (!f) throw new Error(`the request schema has no ${name}`);
  return f;
}

function numberIn(input: Record<string, unknown>, name: string): number {
  const v = input[name];
  return typeof v === 'number' ? v : NaN;
}

function factsOf(r: RequestRecord, remaining: number | null): ResultFacts {
  return {
    request_id: r.request_id,
    seed: numberIn(r.input, 'seed'),
    width: numberIn(r.input, 'width'),
    height: numberIn(r.input, 'height'),
    format: typeof r.input.image_format === 'string' ? r.input.image_format : 'png',
    generation_time: r.metrics.inference_time,
    total_time: r.metrics.total_time,
    cost: r.metrics.cost,
    remaining_credits: remaining,
  };
}

function previewOf(v: unknown): Preview | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const p = v as Record<string, unknown>;
  return typeof p.width === 'number' && typeof p.height === 'number' && typeof p.png_base64 === 'string'
    ? { width: p.width, height: p.height, png_base64: p.png_base64 }
    : undefined;
}

/**
 * Follows the event stream (EventSource on the signed events_url; a refused link is renewed
 * from the record) to the request's end; polls the record if the stream cannot be had.
 */
async function follow(sub: Submitted, apiKey: string, signal: AbortSignal): Promise<RequestRecord> {
  try {
    for await (const ev of followEvents(sub.events_url, { signal, renew: () => eventsUrl(sub.response_url, apiKey) })) {
      let data: unknown;
      try {
        data = JSON.parse(ev.data);
      } catch {
        continue;
      }
      const d = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
      if (ev.event === 'queued' && typeof d.position === 'number') progress.queued(d.position);
      else if (ev.event === 'progress' && typeof d.step === 'number' && typeof d.total === 'number') progress.step(d.step, d.total, previewOf(d.preview));
      else if (ev.event === 'completed' || ev.event === 'failed' || ev.event === 'cancelled') return recordOf(data);
    }
  } catch (e) {
    if (!(e instanceof NetworkFailure) && !(e instanceof TypeError)) throw e;
  }
  progress.end('Lost the event stream; checking the request…', true);
  for (;;) {
    const r = await getRecord(sub.response_url, apiKey);
    if (TERMINAL.has(r.status)) return r;
    await new Promise((res) => setTimeout(res, 1000));
  }
}

function showFailure(e: unknown): void {
  if (e instanceof ApiFailure) {
    const text = describeFailure(e);
    if (e.status === 401 || e.status === 403) errors.show([{ field: KEY_FIELD, message: text }]);
    else if (e.details.length > 0) errors.show(e.details);
    else if (e.code.startsWith('image_') || e.code === 'url_blocked') errors.show([{ field: IMAGES, message: e.message }]);
    say('error', text);
  } else if (e instanceof Error) say('error', e.message);
  else say('error', String(e));
}

async function start(): Promise<void> {
  let specs: BodySpec[];
  try {
    specs = await loadBodySpecs();
  } catch (e) {
    say('error', `Could not read the API description (/openapi.json): ${e instanceof Error ? e.message : String(e)}`);
    generateButton.disabled = true;
    return;
  }
  // The reference list is the same field for every model (GENERATE_PROPERTIES), built once.
  const refs = new References(fieldOf(specs[0]!, IMAGES), {
    zone: byId('ref-zone', HTMLElement),
    picker: byId('ref-files', HTMLInputElement),
    url: byId('ref-url', HTMLInputElement),
    addUrl: byId('ref-add', HTMLButtonElement),
    list: byId('ref-list', HTMLElement),
    count: byId('ref-count', HTMLElement),
    error: byId('ref-problem', HTMLElement),
  });
  errors.register(IMAGES, byId('err-image_urls', HTMLElement), byId('ref-zone', HTMLElement));
  // So are the LoRA rows; an error of the list itself (too many) goes below them.
  const loras = new Loras(
    fieldOf(specs[0]!, LORAS),
    { list: byId('lora-list', HTMLElement), add: byId('lora-add', HTMLButtonElement), count: byId('lora-count', HTMLElement), hint: byId('lora-hint', HTMLElement) },
    errors,
  );
  errors.register(LORAS, byId('err-loras', HTMLElement), byId('lora-add', HTMLButtonElement));

  const promptBox = byId('prompt-field', HTMLElement);
  const paramsBox = byId('params', HTMLElement);
  let promptForm: ParamsForm;
  let params: ParamsForm;
  /**
   * Builds the prompt and the parameter controls from `spec`: each at that model's default,
   * with its ranges, but for what the user had changed from the previous model's defaults,
   * which is kept (a typed prompt, a chosen seed or size).
   */
  const render = (spec: BodySpec, previous?: { prompt: ParamsForm; params: ParamsForm }) => {
    const kept = [...(previous?.prompt.edited() ?? []), ...(previous?.params.edited() ?? [])];
    errors.clear();
    promptBox.replaceChildren();
    paramsBox.replaceChildren();
    promptForm = new ParamsForm(promptBox, [fieldOf(spec, PROMPT)], errors);
    params = new ParamsForm(paramsBox, spec.fields.filter((f) => f.name !== PROMPT && f.name !== IMAGES && f.name !== LORAS && !NOT_SHOWN.has(f.name)), errors);
    for (const [name, value] of kept) {
      promptForm.set(name, value);
      params.set(name, value);
    }
    // seed: the schema's minimum is the "random" sentinel (-1, contract §1).
    const seedInput = params.control('seed');
    const seedMin = fieldOf(spec, 'seed').minimum;
    if (seedInput && seedMin !== undefined) {
      const random = el('button', { type: 'button', id: 'seed-random', title: `${seedMin} picks a random seed` }, 'random');
      random.addEventListener('click', () => params.set('seed', seedMin));
      const row = el('div', { class: 'row' });
      seedInput.replaceWith(row);
      row.append(seedInput, random);
    }
  };
  const picker = new ModelPicker({ select: byId('model', HTMLSelectElement), about: byId('model-about', HTMLElement) }, specs, (spec) =>
    render(spec, { prompt: promptForm, params }),
  );
  render(picker.current());
  byId('reset', HTMLButtonElement).addEventListener('click', () => params.reset());

  const result = new ResultView(
    {
      figure: byId('result', HTMLElement),
      image: byId('result-image', HTMLImageElement),
      info: byId('result-info', HTMLElement),
      download: byId('download', HTMLAnchorElement),
      reuseSeed: byId('reuse-seed', HTMLButtonElement),
      note: byId('result-note', HTMLElement),
    },
    (seed) => {
      params.set('seed', seed);
      params.control('seed')?.focus();
      say('info', `Seed ${seed} is in the seed field.`);
    },
  );

  const historyList = byId('history', HTMLElement);
  const showHistory = (entries: HistoryEntry[]) => {
    renderHistory(historyList, entries, (e) => void view(e));
    byId('history-empty', HTMLElement).hidden = entries.length > 0;
  };
  const view = async (e: HistoryEntry) => {
    const facts: ResultFacts = { ...e, total_time: null, remaining_credits: null };
    try {
      const blob = await output(`/v2/requests/${encodeURIComponent(e.request_id)}/output`, key.value());
      await result.show(URL.createObjectURL(blob), facts);
    } catch (err) {
      const why = err instanceof ApiFailure && err.status === 404 ? 'the server no longer keeps this image' : 'the image could not be fetched';
      await result.show(e.thumb, facts, `Thumbnail only: ${why}.`);
    }
  };
  byId('history-clear', HTMLButtonElement).addEventListener('click', () => {
    clearHistory();
    showHistory([]);
  });
  showHistory(loadHistory());

  let running: { sub: Submitted | null; abort: AbortController } | null = null;
  cancelButton.addEventListener('click', () => {
    if (running?.sub) void cancel(running.sub.cancel_url, key.value()).catch(showFailure);
    else running?.abort.abort();
  });

  byId('form', HTMLFormElement).addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!running) void generate();
  });

  async function generate(): Promise<void> {
    errors.clear();
    unsay();
    const apiKey = key.value();
    if (!apiKey) {
      errors.show([{ field: KEY_FIELD, message: 'Enter an API key (make one with `klein keys create`).' }]);
      return;
    }
    const p = promptForm.values();
    const v = params.values();
    const l = loras.values();
    if (v.problems.length > 0 || l.problems.length > 0) {
      errors.show([...v.problems, ...l.problems]);
      say('error', 'Fix the marked fields.');
      return;
    }
    const body = { ...p.body, [IMAGES]: refs.values(), ...v.body, ...(l.loras.length > 0 ? { [LORAS]: l.loras } : {}) };
    running = { sub: null, abort: new AbortController() };
    generateButton.disabled = true;
    cancelButton.hidden = false;
    progress.start();
    try {
      running.sub = await submit(picker.current().model, apiKey, body);
      const record = await follow(running.sub, apiKey, running.abort.signal);
      if (record.status !== 'COMPLETED') {
        const text = describeEnd(record.status, record.error);
        progress.end(text, true);
        say(record.status === 'CANCELLED' ? 'info' : 'error', text);
        return;
      }
      progress.end('Done', false);
      const blob = await output(record.output_url, apiKey);
      const remaining = await credits(apiKey).catch(() => null);
      if (remaining !== null) key.showCredits(remaining);
      const facts = factsOf(record, remaining);
      const img = await result.show(URL.createObjectURL(blob), facts);
      const entry: HistoryEntry = {
        request_id: facts.request_id,
        created_at: new Date().toISOString(),
        prompt: typeof record.input.prompt === 'string' ? record.input.prompt : '',
        seed: facts.seed,
        width: facts.width,
        height: facts.height,
        format: facts.format,
        cost: facts.cost,
        generation_time: facts.generation_time,
        thumb: thumbnail(img),
      };
      showHistory(addToHistory(entry));
      say('ok', `Done: seed ${facts.seed}, ${facts.cost ?? 0} credits.`);
    } catch (e) {
      if (e instanceof DOMException && e.name === 'AbortError') {
        progress.end('Stopped.', true);
        return;
      }
      progress.hide();
      showFailure(e);
    } finally {
      running = null;
      generateButton.disabled = false;
      cancelButton.hidden = true;
    }
  }
}

void start();
