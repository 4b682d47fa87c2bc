/**
 * The BullMQ job of the scaled-out queue, shared by its producer (distributed-queue.ts) and
 * its consumers (worker/fleet-worker.ts): the queue's name and what a job carries. A job is
 * only a pointer to its request row; everything else is read from the row.
 */
export const QUEUE_NAME = 'generate';

export interface JobData {
  id: string;
  route: string;
}
