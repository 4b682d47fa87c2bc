/**
 * The answers of GET /health and GET /health/ready (cog style: health always answers, the
 * state is in the body), as the routes' schemas and OpenAPI components.
 */
import Type, { type Static } from 'typebox';
import { Choice } from './string-schemas.js';

/** The states of a server, an engine and a fleet worker (the queues' readiness and /health). */
export const HEALTH_STATUSES = ['STARTING', 'READY', 'BUSY', 'UNHEALTHY', 'DRAINING'] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

const HealthStatus = Choice(HEALTH_STATUSES, { description: 'READY or BUSY take work; STARTING and DRAINING answer 503, UNHEALTHY 502 or 503' });
const reason = Type.Optional(Type.String({ description: 'Why, when not READY or BUSY' }));

const QueueState = Type.Object({
  waiting: Type.Integer(),
  running: Type.Integer(),
  oldest_age_s: Type.Number({ description: 'Age of the oldest waiting request, in seconds' }),
});

/** One served model's state (contract §6). */
const ModelHealth = Type.Object(
  {
    status: HealthStatus,
    reason,
    source: Type.String({ description: 'What it loads: a hub id, a directory, or a tiny variant (KLEIN_MODELS)' }),
    variant: Choice(['distilled', 'base'], { description: "Read from the model's files; the defaults follow it" }),
    defaults: Type.Object({ steps: Type.Integer(), cfg: Type.Number() }, { description: 'The defaults of steps and cfg on its routes' }),
    workers: Type.Optional(Type.Integer({ description: 'Scaled out: live workers serving it (ready, busy or starting); 0 means a synchronous call answers 503' })),
    queue: QueueState,
  },
  { additionalProperties: true },
);

export const Health = Type.Object(
  {
    status: HealthStatus,
    reason,
    model: Type.String({ description: 'The first served model (KLEIN_MODELS; KLEIN_MODEL alone serves it as flux-2-klein-4b)' }),
    models: Type.Record(Type.String(), ModelHealth, { description: 'Each served model by slug: its state, variant, defaults, queue and engine (or workers)' }),
    queue: QueueState,
  },
  {
    additionalProperties: true,
    $id: 'Health',
    description: "The server's state (its least ready model's), each model's, the queue, plus what the queue describes (the engines, or the fleet of workers)",
  },
);

export const ReadyCheck = Type.Object({ status: HealthStatus, reason }, { $id: 'ReadyCheck', description: 'The state alone: 200 when work can be taken, else 503' });

export type Health = Static<typeof Health>;
export type ReadyCheck = Static<typeof ReadyCheck>;
