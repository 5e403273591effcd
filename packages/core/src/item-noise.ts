import { Rng } from './random.js';

/**
 * Noise for a batch where every item draws from its own copy of `Rng(seed)`: an image's noise
 * (x_T and, with eta > 0, each DDIM step's) does not depend on which batch it is in or where, so
 * `diad test`, `predict` and validation give an image the same score.
 * Consumes values item by item in NCHW order, as `DiffusionSchedule.qSample`/`ddimStep` read them.
 */
export class ItemNoise {
  private readonly rngs: Rng[];
  private k = 0;

  /**
   * @param seed noise seed (the same for every item).
   * @param items batch size N.
   * @param perItem values per item (C * h * w).
   */
  constructor(
    seed: number,
    items: number,
    private readonly perItem: number,
  ) {
    this.rngs = Array.from({ length: items }, () => new Rng(seed));
  }

  /** The next standard normal of the item whose turn it is. */
  normal(): number {
    const i = Math.floor(this.k / this.perItem) % this.rngs.length;
    this.k++;
    return this.rngs[i].normal();
  }

  /** `n` standard normals in order. */
  normals(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let j = 0; j < n; j++) out[j] = this.normal();
    return out;
  }
}
