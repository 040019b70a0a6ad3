/**
 * Named-tensor files: `<name>.json` (manifest: tfjs weight specs + metadata) and `<name>.bin`
 * (little-endian data). Weights ship as float16 (tfjs's own `quantization: float16` spec, so the
 * file is also readable by tfjs's decodeWeights); checkpoints keep float32. Secondary models (the
 * certification baselines) may ship as uint8 (tfjs's affine `quantization: uint8` spec: value =
 * q * scale + min per tensor, error <= scale / 2) to stay within the size budget. The data file may
 * also be kept gzip-compressed, `<name>.bin.gz` (lossless: the same bytes once inflated, so the same
 * fingerprint); `<name>.bin` wins when both exist, and saving removes a stale `.bin.gz`.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { tf, type Tensor } from '../backend/index.js';

export type NamedTensors = Record<string, Tensor>;

interface WeightSpec {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  quantization?: { dtype: 'float16'; original_dtype?: 'float32' } | { dtype: 'uint8'; min: number; scale: number; original_dtype?: 'float32' };
}

export interface WeightsManifest<M = Record<string, unknown>> {
  format: 'advpurify-weights/1';
  meta: M;
  weightSpecs: WeightSpec[];
}

// float32 <-> IEEE half, round-to-nearest-even
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
export function toHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** How float32 tensors are stored: as is, as IEEE half, or affine uint8 per tensor. */
export type WeightsDtype = 'float32' | 'float16' | 'uint8';

/** Affine uint8 quantization of one tensor's values (tfjs's scheme: value = q * scale + min). */
export function quantizeUint8(vals: ArrayLike<number>): { q: Uint8Array; min: number; scale: number } {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < vals.length; i++) {
    if (!Number.isFinite(vals[i])) throw new RangeError('cannot quantize a non-finite weight');
    lo = Math.min(lo, vals[i]);
    hi = Math.max(hi, vals[i]);
  }
  if (vals.length === 0) lo = hi = 0;
  const scale = hi > lo ? (hi - lo) / 255 : 1;
  const q = new Uint8Array(vals.length);
  for (let i = 0; i < vals.length; i++) q[i] = Math.min(255, Math.max(0, Math.round((vals[i] - lo) / scale)));
  return { q, min: lo, scale };
}

/** Write tensors (and metadata) atomically: temp files, then rename. */
export function saveWeights(path: string, tensors: NamedTensors, meta: Record<string, unknown>, opts: { float16?: boolean; dtype?: WeightsDtype } = {}): void {
  const dtype: WeightsDtype = opts.dtype ?? (opts.float16 ? 'float16' : 'float32');
  mkdirSync(dirname(path), { recursive: true });
  const specs: WeightSpec[] = [];
  const parts: Buffer[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const vals = t.dataSync();
    if (t.dtype === 'int32') {
      specs.push({ name, shape: t.shape, dtype: 'int32' });
      parts.push(Buffer.from(Int32Array.from(vals).buffer));
    } else if (dtype === 'uint8') {
      const { q, min, scale } = quantizeUint8(vals);
      specs.push({ name, shape: t.shape, dtype: 'float32', quantization: { dtype: 'uint8', min, scale, original_dtype: 'float32' } });
      parts.push(Buffer.from(q.buffer, q.byteOffset, q.byteLength));
    } else if (dtype === 'float16') {
      const h = new Uint16Array(vals.length);
      for (let i = 0; i < vals.length; i++) h[i] = toHalf(vals[i]);
      specs.push({ name, shape: t.shape, dtype: 'float32', quantization: { dtype: 'float16', original_dtype: 'float32' } });
      parts.push(Buffer.from(h.buffer));
    } else {
      specs.push({ name, shape: t.shape, dtype: 'float32' });
      parts.push(Buffer.from(Float32Array.from(vals).buffer));
    }
  }
  const manifest: WeightsManifest = { format: 'advpurify-weights/1', meta, weightSpecs: specs };
  writeFileSync(`${path}.bin.tmp`, Buffer.concat(parts));
  writeFileSync(`${path}.json.tmp`, JSON.stringify(manifest, null, 1));
  renameSync(`${path}.bin.tmp`, `${path}.bin`);
  renameSync(`${path}.json.tmp`, `${path}.json`);
  rmSync(`${path}.bin.gz`, { force: true }); // a compressed copy of older weights must not outlive them
}

/** The data file of weights `path` (without suffix): `<path>.bin`, else `<path>.bin.gz`, else undefined. */
function dataFile(path: string): string | undefined {
  return existsSync(`${path}.bin`) ? `${path}.bin` : existsSync(`${path}.bin.gz`) ? `${path}.bin.gz` : undefined;
}

/** The raw (inflated) bytes of the data file of weights `path`. */
function readData(path: string): Buffer {
  const file = dataFile(path);
  if (!file) throw new Error(`${path}.bin: no such weights file (nor ${path}.bin.gz)`);
  if (!file.endsWith('.gz')) return readFileSync(file);
  try {
    return gunzipSync(readFileSync(file));
  } catch (e) {
    throw new Error(`${file}: not a readable gzip file (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** Short content hash of a weights file (`path` without suffix): logs record which weights made their rows. */
export function weightsFingerprint(path: string): string {
  return dataFile(path) ? createHash('sha256').update(readData(path)).digest('hex').slice(0, 16) : 'missing';
}

export function weightsExist(path: string): boolean {
  return existsSync(`${path}.json`) && dataFile(path) !== undefined;
}

/** Read a manifest and its tensors (float16 and uint8 decoded to float32). Caller owns the tensors. */
export function loadWeights<M = Record<string, unknown>>(path: string): { meta: M; tensors: NamedTensors } {
  const manifest = JSON.parse(readFileSync(`${path}.json`, 'utf8')) as WeightsManifest<M>;
  if (manifest.format !== 'advpurify-weights/1') throw new Error(`${path}.json: not an advpurify weights manifest`);
  const bin = readData(path);
  const tensors: NamedTensors = {};
  let off = 0;
  for (const s of manifest.weightSpecs) {
    const n = s.shape.reduce((p, q) => p * q, 1);
    if (s.dtype === 'int32') {
      tensors[s.name] = tf.tensor(new Int32Array(bin.buffer.slice(bin.byteOffset + off, bin.byteOffset + off + 4 * n)), s.shape, 'int32');
      off += 4 * n;
    } else if (s.quantization?.dtype === 'uint8') {
      const { min, scale } = s.quantization;
      const f = new Float32Array(n);
      for (let i = 0; i < n; i++) f[i] = bin[off + i] * scale + min;
      tensors[s.name] = tf.tensor(f, s.shape, 'float32');
      off += n;
    } else if (s.quantization?.dtype === 'float16') {
      const h = new Uint16Array(bin.buffer.slice(bin.byteOffset + off, bin.byteOffset + off + 2 * n));
      const f = new Float32Array(n);
      for (let i = 0; i < n; i++) f[i] = fromHalf(h[i]);
      tensors[s.name] = tf.tensor(f, s.shape, 'float32');
      off += 2 * n;
    } else {
      tensors[s.name] = tf.tensor(new Float32Array(bin.buffer.slice(bin.byteOffset + off, bin.byteOffset + off + 4 * n)), s.shape, 'float32');
      off += 4 * n;
    }
  }
  if (off !== bin.length) {
    tf.dispose(Object.values(tensors));
    throw new Error(`${dataFile(path)}: expected ${off} bytes, found ${bin.length}`);
  }
  return { meta: manifest.meta, tensors };
}
