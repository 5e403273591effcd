/**
 * Micro-batching with a bounded queue: requests wait until `maxBatch` of them are queued or the
 * first has waited `maxWaitMs`, then run as one batch (one batch at a time: the model's sessions
 * are used by one caller). A full queue refuses at once ({@link QueueFullError}), and a request that
 * is not answered within `timeoutMs` fails ({@link RequestTimeoutError}) without stopping its batch.
 */

/** Options of {@link Batcher}. */
export interface BatcherOptions {
  /** Most items per batch (>= 1). */
  maxBatch: number;
  /** Longest wait, in ms, of the first queued item for more to join its batch. */
  maxWaitMs: number;
  /** Most items waiting for a batch (not counting the running one); more are refused. */
  maxQueue: number;
  /** Longest time, in ms, from submit to answer. */
  timeoutMs: number;
}

/** The queue is full: retry after `retryAfterSeconds`. */
export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super(`the queue is full; retry in ${retryAfterSeconds} s`);
    this.name = 'QueueFullError';
  }
}

/** An item was not answered in time. */
export class RequestTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`not answered within ${timeoutMs} ms; the server is overloaded, retry later`);
    this.name = 'RequestTimeoutError';
  }
}

interface Pending<I, O> {
  item: I;
  resolve(o: O): void;
  reject(e: Error): void;
  settled: boolean;
  timer: NodeJS.Timeout;
}

/** Batches items for `run`, which answers a batch in order (one output per input). */
export class Batcher<I, O> {
  private readonly queue: Pending<I, O>[] = [];
  private running: Promise<void> | null = null;
  private waitTimer: NodeJS.Timeout | null = null;
  /** Seconds per batch, smoothed: the Retry-After estimate. */
  private batchSeconds = 1;

  /**
   * @param run answers one batch (1..maxBatch items), in order.
   * @param onBatch called with each batch's size and seconds (metrics).
   * @throws Error when an option is out of range.
   */
  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    readonly options: BatcherOptions,
    private readonly onBatch: (size: number, seconds: number) => void = () => {},
  ) {
    const { maxBatch, maxWaitMs, maxQueue, timeoutMs } = options;
    if (!(Number.isInteger(maxBatch) && maxBatch >= 1)) throw new Error(`maxBatch ${maxBatch}: give a whole number >= 1`);
    if (!(Number.isInteger(maxQueue) && maxQueue >= 1)) throw new Error(`maxQueue ${maxQueue}: give a whole number >= 1`);
    if (!(maxWaitMs >= 0)) throw new Error(`maxWaitMs ${maxWaitMs}: give a number >= 0`);
    if (!(timeoutMs > 0)) throw new Error(`timeoutMs ${timeoutMs}: give a number > 0`);
  }

  /** Items waiting for a batch. */
  get depth(): number {
    return this.queue.length;
  }

  /** Whether a batch is running. */
  get busy(): boolean {
    return this.running !== null;
  }

  /** Whether a new item would be refused. */
  get full(): boolean {
    return this.queue.length >= this.options.maxQueue;
  }

  /** Seconds until the queue has room, estimated from recent batch times (at least 1). */
  retryAfterSeconds(): number {
    const batchesAhead = Math.ceil(this.queue.length / this.options.maxBatch) + (this.running ? 1 : 0);
    return Math.max(1, Math.ceil(batchesAhead * this.batchSeconds));
  }

  /**
   * Queues an item.
   * @returns its output, once its batch has run.
   * @throws QueueFullError at once when `maxQueue` items wait; RequestTimeoutError after `timeoutMs`;
   *   the batch's error when `run` fails.
   */
  submit(item: I): Promise<O> {
    if (this.full) return Promise.reject(new QueueFullError(this.retryAfterSeconds()));
    return new Promise<O>((resolve, reject) => {
      const p: Pending<I, O> = {
        item,
        resolve,
        reject,
        settled: false,
        timer: setTimeout(() => {
          const i = this.queue.indexOf(p);
          if (i >= 0) this.queue.splice(i, 1);
          settle(p, () => reject(new RequestTimeoutError(this.options.timeoutMs)));
        }, this.options.timeoutMs),
      };
      this.queue.push(p);
      this.schedule();
    });
  }

  /** Resolves when nothing waits and no batch runs (graceful shutdown). */
  async drain(): Promise<void> {
    while (this.running || this.queue.length) {
      if (this.running) await this.running;
      else this.start();
    }
  }

  private schedule(): void {
    if (this.running) return;
    if (this.queue.length >= this.options.maxBatch) this.start();
    else this.waitTimer ??= setTimeout(() => this.start(), this.options.maxWaitMs);
  }

  private start(): void {
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimer = null;
    if (this.running || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.options.maxBatch);
    const t0 = performance.now();
    const job = async (): Promise<void> => {
      try {
        const outs = await this.run(batch.map((p) => p.item));
        if (outs.length !== batch.length) throw new Error(`the batch gave ${outs.length} answers for ${batch.length} items`);
        for (const [i, p] of batch.entries()) settle(p, () => p.resolve(outs[i]));
      } catch (e) {
        for (const p of batch) settle(p, () => p.reject(e as Error));
      }
      const s = (performance.now() - t0) / 1000;
      this.batchSeconds = 0.8 * this.batchSeconds + 0.2 * s;
      this.onBatch(batch.length, s);
    };
    this.running = job().then(() => {
      this.running = null;
      if (this.queue.length) this.schedule();
    });
  }
}

function settle<I, O>(p: Pending<I, O>, f: () => void): void {
  if (p.settled) return;
  p.settled = true;
  clearTimeout(p.timer);
  f();
}
