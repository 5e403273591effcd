/**
 * A registry of interchangeable implementations looked up by `kind` (a feature extractor, a
 * sampler, an autoencoder): a new one is one file plus one `register` call, and configs and
 * command lines name it by its kind. Each stage package owns one registry of its stage.
 */
export class Registry<T> {
  private readonly entries = new Map<string, T>();

  /** @param what what the entries are, for error messages (e.g. `feature extractor`). */
  constructor(readonly what: string) {}

  /**
   * Adds `entry` under `kind`.
   * @param options.replace allow replacing an existing kind (default: refuse).
   * @throws Error on an empty kind, or a kind already registered without `replace`.
   */
  register(kind: string, entry: T, options: { replace?: boolean } = {}): this {
    if (!kind.trim()) throw new Error(`${this.what} registry: the kind must be a non-empty name`);
    if (this.entries.has(kind) && !options.replace) throw new Error(`${this.what} "${kind}" is already registered; pass { replace: true } to replace it`);
    this.entries.set(kind, entry);
    return this;
  }

  /**
   * The entry of `kind`.
   * @param source what asked for it (a config field, a flag), named in the error.
   * @throws Error naming `source` and listing the registered kinds.
   */
  get(kind: string, source = 'kind'): T {
    const e = this.entries.get(kind);
    if (e === undefined) throw new Error(`${source}: unknown ${this.what} "${kind}"; registered: ${this.kinds().join(', ') || '(none)'}`);
    return e;
  }

  has(kind: string): boolean {
    return this.entries.has(kind);
  }

  /** The registered kinds, in registration order. */
  kinds(): string[] {
    return [...this.entries.keys()];
  }
}
