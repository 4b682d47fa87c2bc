/** Configuration: the connection bounds and the crash points are read once and checked. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ConfigError, loadConfig } from './config.js';

const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
};

it('bounds connections by default: a whole request within 55 s (answered within a minute), headers within 20 s, 1024 open', () => {
  const c = loadConfig({});
  assert.equal(c.requestTimeoutMs, 55_000);
  assert.equal(c.headersTimeoutMs, 20_000);
  assert.equal(c.maxConnections, 1024);
  assert.deepEqual(c.faults, []);
  const set = loadConfig({ KLEIN_REQUEST_TIMEOUT: '2.5', KLEIN_HEADERS_TIMEOUT: '1', KLEIN_MAX_CONNECTIONS: '0' });
  assert.deepEqual([set.requestTimeoutMs, set.headersTimeoutMs, set.maxConnections], [2500, 1000, 0]);
});

it('refuses bad bounds, naming the variable', () => {
  assert.match(problems({ KLEIN_REQUEST_TIMEOUT: '0' })[0] ?? '', /^KLEIN_REQUEST_TIMEOUT: /);
  assert.match(problems({ KLEIN_MAX_CONNECTIONS: '-1' })[0] ?? '', /^KLEIN_MAX_CONNECTIONS: /);
  assert.match(problems({ KLEIN_REQUEST_TIMEOUT: '10', KLEIN_HEADERS_TIMEOUT: '30' })[0] ?? '', /^KLEIN_HEADERS_TIMEOUT: must not be longer than KLEIN_REQUEST_TIMEOUT/);
});

it('arms only known crash points', () => {
  assert.deepEqual(loadConfig({ KLEIN_FAULTS: 'submit.after_commit, end.FAILED.after_ledger' }).faults, ['submit.after_commit', 'end.FAILED.after_ledger']);
  assert.match(problems({ KLEIN_FAULTS: 'end.COMPLETE.after_ledger' })[0] ?? '', /^KLEIN_FAULTS: unknown crash point end\.COMPLETE\.after_ledger/);
});

it('reads link secrets (comma-separated, first signs) and refuses short ones; the link lifetimes are bounded', () => {
  const a = 'a'.repeat(32);
  const b = 'b'.repeat(44);
  assert.deepEqual(loadConfig({ KLEIN_LINK_SECRET: ` ${b}, ${a} ` }).linkSecrets, [b, a]);
  assert.deepEqual(loadConfig({}).linkSecrets, []);
  assert.equal(loadConfig({}).linkTtlS, 3600);
  assert.match(problems({ KLEIN_LINK_SECRET: `${a},short` })[0] ?? '', /^KLEIN_LINK_SECRET: each comma-separated secret must be at least 32 characters/);
  assert.match(problems({ KLEIN_LINK_TTL: '10' })[0] ?? '', /^KLEIN_LINK_TTL: /);
  assert.equal(loadConfig({}).eventsLinkTtlS, 900);
  assert.equal(loadConfig({ KLEIN_EVENTS_LINK_TTL: '120' }).eventsLinkTtlS, 120);
  assert.match(problems({ KLEIN_EVENTS_LINK_TTL: '59' })[0] ?? '', /^KLEIN_EVENTS_LINK_TTL: /);
  assert.match(problems({ KLEIN_EVENTS_LINK_TTL: '86401' })[0] ?? '', /^KLEIN_EVENTS_LINK_TTL: /);
});

it('reads OpenAI model aliases (contract §8 default, alias=slug list, empty for none) and refuses bad entries, naming them', () => {
  assert.deepEqual([...loadConfig({}).openAiModelAliases], [
    ['gpt-image-1', 'flux-2-klein-4b'],
    ['dall-e-3', 'flux-2-klein-4b'],
    ['dall-e-2', 'flux-2-klein-4b'],
  ]);
  assert.deepEqual([...loadConfig({ KLEIN_OPENAI_MODEL_ALIASES: ' my-model = flux-2-klein-4b ,x:1=flux-2-klein-4b' }).openAiModelAliases], [
    ['my-model', 'flux-2-klein-4b'],
    ['x:1', 'flux-2-klein-4b'],
  ]);
  assert.equal(loadConfig({ KLEIN_OPENAI_MODEL_ALIASES: '' }).openAiModelAliases.size, 0);
  assert.match(problems({ KLEIN_OPENAI_MODEL_ALIASES: 'gpt-image-1' })[0] ?? '', /^KLEIN_OPENAI_MODEL_ALIASES: each entry must be alias=slug/);
  assert.match(problems({ KLEIN_OPENAI_MODEL_ALIASES: 'a=flux-9' })[0] ?? '', /^KLEIN_OPENAI_MODEL_ALIASES: a must map to a served model \(flux-2-klein-4b\), got "flux-9"/);
  assert.match(problems({ KLEIN_OPENAI_MODEL_ALIASES: 'a=flux-2-klein-4b,a=flux-2-klein-4b' })[0] ?? '', /a is given more than once/);
  assert.match(problems({ KLEIN_OPENAI_MODEL_ALIASES: 'flux-2-klein-4b=flux-2-klein-4b' })[0] ?? '', /is a served model, not an alias/);
});
