/**
 * The models one server serves (contract §6): each by its slug, which names its routes
 * (`/v1/<slug>`, `/v2/<slug>`), the `model` of the OpenAI routes, the queue its requests
 * wait in, and the generation metadata written into PNG outputs.
 *
 * A model's variant is read from its files (model_index.json's `is_distilled`); the
 * defaults follow it: distilled models take §1's (the seed page's), base models BFL's
 * defaults for klein-base (50 steps, guidance 4), since an undistilled model needs the
 * steps and real guidance the distilled one was trained to skip.
 */
/** The model of a server configured with only KLEIN_MODEL (today's single endpoint). */
export const DEFAULT_MODEL_SLUG = 'flux-2-klein-4b';

export type Variant = 'distilled' | 'base';
export const VARIANTS: readonly Variant[] = ['distilled', 'base'];

/** The defaults that differ between variants; every other default is §1's for all models. */
export interface ModelDefaults {
  steps: number;
  cfg: number;
}

/** distilled: §1's defaults (the seed page's example body); base: BFL's for klein-base. */
export const VARIANT_DEFAULTS: Readonly<Record<Variant, Readonly<ModelDefaults>>> = Object.freeze({
  distilled: Object.freeze({ steps: 20, cfg: 5 }),
  base: Object.freeze({ steps: 50, cfg: 4 }),
});

/** A slug: lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit, at most 64. */
export const SLUG_PATTERN = /^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$/;

/**
 * Names a slug may not take: the other routes under /v1/ and /v2/ (`/v1/models`,
 * `/v1/images/…`, `/v2/requests/…`, `/v1/get-user-credits`, …), so a model never shadows one.
 */
export const RESERVED_SLUGS: readonly string[] = ['models', 'images', 'requests', 'get-user-credits', 'admin', 'health', 'metrics', 'docs', 'openapi.json', 'usage', 'account', 'keys', 'webhooks'];

/** A served model as the gateway knows it before any engine runs. */
export interface ServedModel {
  slug: string;
  /** `tiny`, `tiny-base`, `tiny-9b`, a local diffusers-layout directory, or a hub id. */
  source: string;
  variant: Variant;
  defaults: Readonly<ModelDefaults>;
}

/** The served models in their configured order; the first is the one an OpenAI call without `model` runs. */
export class ServedModels {
  private readonly bySlug: ReadonlyMap<string, ServedModel>;

  constructor(readonly list: readonly ServedModel[]) {
    if (list.length === 0) throw new Error('a server serves at least one model');
    this.bySlug = new Map(list.map((m) => [m.slug, m]));
  }

  get(slug: string): ServedModel | undefined {
    return this.bySlug.get(slug);
  }

  get first(): ServedModel {
    return this.list[0]!;
  }

  get slugs(): string[] {
    return this.list.map((m) => m.slug);
  }
}
