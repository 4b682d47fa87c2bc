/**
 * `klein generate "prompt" [--image ref.png] [--aspect-ratio 16:9] [--lora PATH[:SCALE]]
 * [--out out.png] [--json]` against a running server (KLEIN_URL, KLEIN_API_KEY), through
 * the async API with a progress bar from the events stream.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { KleinApiError, KleinClient, type GenerateBody } from '../client/index.js';
import { MAX_LORAS, MAX_LORA_SCALE } from '../contract/request-schema.js';

const EXT: Record<string, string> = { 'image/png': 'png', 'image/jpeg': 'jpg', 'image/webp': 'webp' };

async function imageArg(v: string): Promise<string> {
  if (/^(https?:|data:)/.test(v)) return v;
  const bytes = await readFile(v);
  const type = bytes[0] === 0xff ? 'jpeg' : bytes.toString('latin1', 8, 12) === 'WEBP' ? 'webp' : 'png';
  return `data:image/${type};base64,${bytes.toString('base64')}`;
}

type Lora = NonNullable<GenerateBody['loras']>[number];

/** A plain decimal, as a person types a scale: `0.8`, `-1`, `.5`, `+2`. */
const DECIMAL = /^[-+]?(\d+(\.\d*)?|\.\d+)$/;

/**
 * `--lora PATH[:SCALE]` (contract §7): PATH is an http(s) URL, a hub repo id
 * (`owner/name[@rev]`) or a file name in the server's KLEIN_LORA_DIR. URLs hold ':' of
 * their own (`https://`, `host:port`), so only a last ':' whose tail has no '/' introduces a
 * scale; that tail must then be a decimal within the contract's range, said here before any
 * request is made rather than sent on as part of a path.
 */
export function parseLora(arg: string): Lora {
  const at = arg.lastIndexOf(':');
  const tail = at < 0 ? '' : arg.slice(at + 1);
  if (at <= 0 || tail.includes('/')) return { path: arg };
  const path = arg.slice(0, at);
  if (!DECIMAL.test(tail)) throw new Error(`--lora ${arg}: the scale after the last ':' must be a number from -${MAX_LORA_SCALE} to ${MAX_LORA_SCALE}, not '${tail}'`);
  const scale = Number(tail);
  if (Math.abs(scale) > MAX_LORA_SCALE) throw new Error(`--lora ${arg}: scale ${tail} is outside -${MAX_LORA_SCALE} to ${MAX_LORA_SCALE}`);
  return { path, scale };
}

function bar(step: number, total: number): string {
  const w = 24;
  const done = Math.round((step / total) * w);
  return `[${'#'.repeat(done)}${'.'.repeat(w - done)}] ${step}/${total}`;
}

export function register(program: Command): void {
  program
    .command('generate <prompt>')
    .description('generate an image on a running server (KLEIN_URL, KLEIN_API_KEY)')
    .option('--image <file-or-url>', 'reference image (repeat for up to 4)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--aspect-ratio <r>', 'e.g. 16:9, or match_input_image')
    .option('--width <n>', 'output width (with --height)', Number)
    .option('--height <n>', 'output height (with --width)', Number)
    .option('--steps <n>', 'sampler steps', Number)
    .option('--cfg <n>', 'guidance scale', Number)
    .option('--seed <n>', 'seed (-1 for random)', Number)
    .option('--sampler <s>', 'euler or res_2s')
    .option('--negative-prompt <s>', 'negative prompt (used when cfg > 1)')
    .option('--format <f>', 'png, jpeg or webp')
    .option(
      '--lora <path[:scale]>',
      `LoRA adapter: an http(s) URL of a .safetensors, a hub repo id owner/name[@rev], or a file in the server's KLEIN_LORA_DIR; scale -${MAX_LORA_SCALE} to ${MAX_LORA_SCALE}, default 1 (repeat for up to ${MAX_LORAS})`,
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('--out <file>', 'where to write the image (default: <request id>.<ext>)')
    .option('--json', 'print a JSON summary instead of a progress bar', false)
    .action(async (prompt: string, options: Record<string, unknown>) => {
      const url = process.env.KLEIN_URL || 'http://127.0.0.1:8080';
      const apiKey = process.env.KLEIN_API_KEY;
      if (!apiKey) throw new Error('KLEIN_API_KEY is not set: create a key with `klein keys create` and export it');
      const loraArgs = options.lora as string[];
      if (loraArgs.length > MAX_LORAS) throw new Error(`--lora: at most ${MAX_LORAS} adapters, ${loraArgs.length} given`);
      const loras = loraArgs.map(parseLora);
      const client = new KleinClient({ baseUrl: url, apiKey });
      const body: GenerateBody = { prompt };
      if (loras.length > 0) body.loras = loras;
      if ((options.image as string[]).length > 0) body.image_urls = await Promise.all((options.image as string[]).map(imageArg));
      const map: Array<[string, keyof GenerateBody]> = [
        ['aspectRatio', 'aspect_ratio'], ['width', 'width'], ['height', 'height'], ['steps', 'steps'], ['cfg', 'cfg'],
        ['seed', 'seed'], ['sampler', 'sampler'], ['negativePrompt', 'negative_prompt'], ['format', 'image_format'],
      ];
      for (const [from, to] of map) if (options[from] !== undefined) (body as unknown as Record<string, unknown>)[to] = options[from];
      const tty = !options.json && process.stderr.isTTY;
      try {
        const rec = await client.run(body, {
          onEvent: (e) => {
            if (options.json) return;
            if (e.event === 'queued') process.stderr.write(`${tty ? '\r' : ''}queued, position ${e.data.position}${tty ? '' : '\n'}`);
            if (e.event === 'progress') process.stderr.write(`${tty ? '\r' : ''}${bar(e.data.step, e.data.total)}${tty ? '' : '\n'}`);
          },
        });
        if (tty) process.stderr.write('\n');
        if (rec.status !== 'COMPLETED') {
          throw new Error(`request ${rec.request_id} ${rec.status.toLowerCase()}: ${rec.error?.message ?? ''}`);
        }
        const out = await client.output(rec.request_id);
        const file = (options.out as string | undefined) ?? `${rec.request_id}.${EXT[out.contentType] ?? 'png'}`;
        await writeFile(file, out.bytes);
        const summary = { request_id: rec.request_id, file, seed: rec.input.seed, bytes: out.bytes.length, content_type: out.contentType, metrics: rec.metrics };
        if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
        else process.stderr.write(`wrote ${file} (seed ${String(rec.input.seed)}, ${rec.metrics.cost} credits)\n`);
      } catch (err) {
        if (err instanceof KleinApiError) {
          const fields = err.details.map((d) => `\n  ${d.field}: ${d.message}`).join('');
          throw new Error(`${err.status} ${err.code}: ${err.message}${fields}`);
        }
        throw err;
      }
    });
}
