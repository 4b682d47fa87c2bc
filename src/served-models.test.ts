import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { parseServedModels, variantOf } from './served-models.js';

const dir = mkdtempSync(join(tmpdir(), 'klein-models-'));
function modelDir(name: string, index: object | null): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  if (index) writeFileSync(join(d, 'model_index.json'), JSON.stringify(index));
  return d;
}

it("reads the variant from the model's files: the miniatures, model_index.json, the hub cache, else the name", () => {
  assert.deepEqual(['tiny', 'tiny-base', 'tiny-9b', 'tiny:base', 'tiny:static-shift', 'simulated:20'].map((m) => variantOf(m)), ['distilled', 'base', 'distilled', 'base', 'distilled', 'distilled']);
  assert.match(variantOf('tiny:huge'), /unknown tiny variant/);
  // The file decides, whatever the name says.
  assert.equal(variantOf(modelDir('klein-base-but-distilled', { _class_name: 'Flux2KleinPipeline', is_distilled: true })), 'distilled');
  assert.equal(variantOf(modelDir('plain', { _class_name: 'Flux2KleinPipeline', is_distilled: false })), 'base');
  assert.equal(variantOf(modelDir('no-flag', { _class_name: 'Flux2KleinPipeline' })), 'base', 'absent means base, as the engine reads it');
  // A hub id downloaded before: its cached model_index.json (newest snapshot).
  const hub = join(dir, 'hub');
  const snap = join(hub, 'models--acme--klein-custom', 'snapshots', 'abc123');
  mkdirSync(snap, { recursive: true });
  writeFileSync(join(snap, 'model_index.json'), JSON.stringify({ is_distilled: false }));
  assert.equal(variantOf('acme/klein-custom', { HF_HUB_CACHE: hub }), 'base');
  // Not downloaded here (a gateway without the weights): BFL's names.
  assert.equal(variantOf('black-forest-labs/FLUX.2-klein-base-4B', { HF_HUB_CACHE: hub }), 'base');
  assert.equal(variantOf('black-forest-labs/FLUX.2-klein-9B', { HF_HUB_CACHE: hub }), 'distilled');
  assert.equal(variantOf('/mnt/models/FLUX.2-klein-base-9B'), 'base', 'a directory only the workers mount');
  assert.match(variantOf('not a model'), /neither a tiny variant, a directory nor a hub id/);
});

it('parses KLEIN_MODELS: slugs, defaults by variant, and one problem per bad entry', () => {
  const problems: string[] = [];
  const m = parseServedModels('flux-2-klein-4b=tiny, flux-2-klein-4b-base=tiny-base ,flux-2-klein-9b=tiny-9b', {}, problems);
  assert.deepEqual(problems, []);
  assert.deepEqual(m.slugs, ['flux-2-klein-4b', 'flux-2-klein-4b-base', 'flux-2-klein-9b']);
  assert.equal(m.first.slug, 'flux-2-klein-4b');
  assert.deepEqual(m.get('flux-2-klein-4b-base'), { slug: 'flux-2-klein-4b-base', source: 'tiny-base', variant: 'base', defaults: { steps: 50, cfg: 4 } });
  assert.deepEqual(m.get('flux-2-klein-9b')?.defaults, { steps: 20, cfg: 5 });

  const bad: string[] = [];
  parseServedModels('a=tiny,a=tiny-9b,Upper=tiny,models=tiny,noequals,=tiny,b=tiny:nope,-x=tiny', {}, bad);
  assert.equal(bad.length, 7, bad.join('\n'));
  assert.match(bad[0]!, /"a" is given more than once/);
  assert.match(bad[1]!, /slug "Upper" must be/);
  assert.match(bad[2]!, /"models" names another route/);
  assert.match(bad[3]!, /each entry must be slug=model, got "noequals"/);
  assert.match(bad[4]!, /each entry must be slug=model, got "=tiny"/);
  assert.match(bad[5]!, /b: unknown tiny variant "nope"/);
  assert.match(bad[6]!, /slug "-x" must be/);
  const none: string[] = [];
  parseServedModels(' , ', {}, none);
  assert.match(none[0]!, /at least one model/);
});
