/**
 * The names the OpenAI routes' `model` takes (contract §8): the served slug, and the aliases
 * of KLEIN_OPENAI_MODEL_ALIASES (config.ts), e.g. gpt-image-1, so that code written for
 * OpenAI runs unchanged. The image routes resolve `model` with it; GET /v1/models lists it.
 */
import type { Config } from '../config.js';
import { MODEL_SLUG } from '../contract/models.js';

/**
 * The served slug a `model` names: itself, or the slug of its alias; undefined for any other
 * name. Absent means the served model.
 */
export function servedModel(config: Pick<Config, 'openAiModelAliases'>, model: string | undefined): string | undefined {
  if (model === undefined || model === MODEL_SLUG) return MODEL_SLUG;
  return config.openAiModelAliases.get(model);
}

/** Every name `model` takes: the slug first, then the aliases in their configured order. */
export function modelNames(config: Pick<Config, 'openAiModelAliases'>): string[] {
  return [MODEL_SLUG, ...config.openAiModelAliases.keys()];
}
