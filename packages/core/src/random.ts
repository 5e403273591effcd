/**
 * Seeded pseudo-random numbers, so noise, initialisation and data order are reproducible.
 * The generator is PCG32 (O'Neill 2014); normals use the Box-Muller transform.
 */
export class Rng {
  private state = 0n;
  private readonly inc: bigint;
  private spare: number | null = null;

  /** @param seed any integer; equal seeds give equal streams. */
  constructor(seed: number, stream = 54) {
    this.inc = ((BigInt(stream) << 1n) | 1n) & MASK64;
    this.nextU32();
    this.state = (this.state + BigInt.asUintN(64, BigInt(seed))) & MASK64;
    this.nextU32();
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    const old = this.state;
    this.state = (old * 6364136223846793005n + this.inc) & MASK64;
    const xorshifted = Number((((old >> 18n) ^ old) >> 27n) & 0xffffffffn);
    const rot = Number(old >> 59n);
    return ((xorshifted >>> rot) | (xorshifted << ((32 - rot) & 31))) >>> 0;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.uniform() * (hi - lo + 1));
  }

  /** Standard normal N(0, 1). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** A Float32Array of `n` standard normals. */
  normals(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal();
    return out;
  }

  /** Fisher-Yates shuffle in place; returns the array. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}

const MASK64 = (1n << 64n) - 1n;
