/**
 * Request states, in one place (design: "Request states"). Every status change in the
 * store goes through `canTransition`; the test beside this file mirrors the table.
 *
 *   QUEUED ──▶ PROCESSING ──▶ COMPLETED
 *     │  │         │  └─────▶ FAILED | CANCELLED
 *     │  │         └────────▶ QUEUED      (requeued after the worker died mid-job)
 *     │  └──────────────────▶ FAILED      (e.g. its inputs were lost in a restart)
 *     └─────────────────────▶ CANCELLED
 *
 * COMPLETED, FAILED and CANCELLED are final: a replayed event cannot reopen a request,
 * so a request is charged (COMPLETED) or refunded (FAILED/CANCELLED) exactly once.
 */
export const REQUEST_STATUSES = ['QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type RequestStatus = (typeof REQUEST_STATUSES)[number];

export const TERMINAL: ReadonlySet<RequestStatus> = new Set<RequestStatus>(['COMPLETED', 'FAILED', 'CANCELLED']);

const ALLOWED: Readonly<Record<RequestStatus, readonly RequestStatus[]>> = {
  QUEUED: ['PROCESSING', 'CANCELLED', 'FAILED'],
  PROCESSING: ['COMPLETED', 'FAILED', 'CANCELLED', 'QUEUED'],
  COMPLETED: [],
  FAILED: [],
  CANCELLED: [],
};

export function isTerminal(s: RequestStatus): boolean {
  return TERMINAL.has(s);
}

export function canTransition(from: RequestStatus, to: RequestStatus): boolean {
  return ALLOWED[from].includes(to);
}

export function isRequestStatus(s: string): s is RequestStatus {
  return (REQUEST_STATUSES as readonly string[]).includes(s);
}
