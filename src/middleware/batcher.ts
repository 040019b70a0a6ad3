/**
 * Micro-batching: items that arrive within `maxWaitMs` of the first one and share a key are run
 * together, up to `maxBatch`. A batch is flushed when full or when the wait runs out, whichever is
 * first, so no item waits more than `maxWaitMs` for company.
 */
export interface BatcherOptions<T> {
  maxBatch: number;
  /** longest wait for a batch to fill, ms */
  maxWaitMs: number;
  /** items with equal keys may share a batch */
  key: (item: T) => string;
  /** items that must run alone (e.g. a fixed seed, whose noise must not depend on its batch-mates) */
  solo?: (item: T) => boolean;
}

interface Pending<T, R> {
  item: T;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

export class MicroBatcher<T, R> {
  private readonly groups = new Map<string, { items: Pending<T, R>[]; timer?: NodeJS.Timeout }>();
  private solos = 0;

  constructor(
    private readonly runBatch: (items: T[]) => Promise<R[]>,
    private readonly o: BatcherOptions<T>,
  ) {}

  /** Items waiting for their batch to start. */
  get waiting(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.items.length;
    return n;
  }

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const solo = this.o.solo?.(item) ?? false;
      const key = solo ? `\0solo${this.solos++}` : this.o.key(item);
      let g = this.groups.get(key);
      if (!g) this.groups.set(key, (g = { items: [] }));
      g.items.push({ item, resolve, reject });
      if (solo || g.items.length >= this.o.maxBatch) this.flush(key);
      else g.timer ??= setTimeout(() => this.flush(key), this.o.maxWaitMs);
    });
  }

  private flush(key: string): void {
    const g = this.groups.get(key);
    if (!g) return;
    this.groups.delete(key);
    if (g.timer) clearTimeout(g.timer);
    const items = g.items;
    let run: Promise<R[]>;
    try {
      run = this.runBatch(items.map((p) => p.item));
    } catch (e) {
      run = Promise.reject(e);
    }
    run.then(
      (rs) => items.forEach((p, i) => p.resolve(rs[i])),
      (e: unknown) => items.forEach((p) => p.reject(e)),
    );
  }
}
