/**
 * Upload decoding on a small pool of worker threads (piscina): a large image's decode and resize
 * take seconds of CPU, which on the main thread would stall every other request and `/healthz`.
 */
import { Piscina } from 'piscina';
import { ImageDecodeError, type RgbImage } from '@diad/datasets';
import type { DecodeResult, DecodeTask } from './decode-worker.js';

// The compiled worker: from dist/ this is dist/decode-worker.js; from src/ (tests on the sources) the built one too.
const WORKER = new URL('../dist/decode-worker.js', import.meta.url).href;

export class UploadDecoder {
  private readonly pool: Piscina<DecodeTask, DecodeResult>;
  private pending = 0;

  /**
   * @param size the model's square input side S.
   * @param maxPixels largest image accepted (width x height), checked on the header.
   * @param threads decode threads (>= 1).
   */
  constructor(
    readonly size: number,
    readonly maxPixels: number,
    threads: number,
  ) {
    if (!(Number.isInteger(threads) && threads >= 1)) throw new Error(`decodeThreads ${threads}: give a whole number >= 1`);
    this.pool = new Piscina({ filename: WORKER, minThreads: 1, maxThreads: threads });
  }

  /** Uploads being decoded or waiting for a thread. */
  get inFlight(): number {
    return this.pending;
  }

  /**
   * Decodes image bytes to RGB and resizes them to S x S.
   * @throws ImageDecodeError `too-large` or `unreadable`.
   */
  async decode(bytes: Uint8Array): Promise<RgbImage> {
    this.pending++;
    try {
      const r = await this.pool.run({ bytes, size: this.size, maxPixels: this.maxPixels });
      if (!r.ok) throw new ImageDecodeError(r.reason, r.message);
      return { data: r.data, width: this.size, height: this.size, channels: 3 };
    } finally {
      this.pending--;
    }
  }

  /** Stops the threads. */
  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
