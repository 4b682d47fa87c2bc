/**
 * The BullMQ jobs of the scaled-out queue, shared by their producer (distributed-queue.ts)
 * and their consumers (worker/fleet-worker.ts): each served model's queue name, and what a
 * job carries. A job is only a pointer to its request row; everything else is read from
 * the row.
 *
 * One queue per model (contract §6): a worker loads one model and takes only its jobs, and
 * each queue's depth is what scales that model's workers (a KEDA ScaledObject per model).
 */
export function queueName(model: string): string {
  // Slugs are [a-z0-9._-] (contract/models.ts): never ':', BullMQ's key separator.
  return `generate.${model}`;
}

export interface JobData {
  id: string;
  route: string;
  model: string;
}
