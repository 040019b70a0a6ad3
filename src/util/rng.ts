/** Small seedable PRNG (mulberry32) for data order, noise seeds and attack restarts. */
import { randomInt } from 'node:crypto';

export type Rng = () => number; // uniform in [0, 1)

export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seed from the OS's CSPRNG: the default for every randomised defence (unpredictable to an attacker). */
export function cryptoSeed(): number {
  return randomInt(0, 2 ** 31 - 1);
}

/** Fisher-Yates permutation of 0..n-1 under a seed. */
export function permutation(n: number, seed: number): Int32Array {
  const rng = mulberry32(seed);
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}
