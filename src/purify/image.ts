/**
 * The edges: encoded images (anything sharp decodes: PNG, JPEG, WebP, GIF, AVIF, TIFF) <-> model
 * tensors [1, H, W, C] in [0, 1].
 *
 * Input policy (documented in the README):
 * - alpha is flattened onto black (Fashion-MNIST/MNIST backgrounds are black);
 * - converted to grayscale for 1-channel models (sRGB luminance), to sRGB for 3-channel ones;
 * - resized to the model's H x W with `fit` = 'contain' (default: letterboxed on black, aspect kept),
 *   'fill' (stretched) or 'cover' (centre crop); the first frame of animations is used;
 * - more than `maxPixels` input pixels (default 25 MP) is refused before decoding (decompression bombs).
 */
import sharp from 'sharp';
import { tf, type Tensor4D } from '../backend/index.js';
import { PurifyError } from './errors.js';
import type { Rect } from './patch/box.js';

export type Fit = 'contain' | 'fill' | 'cover';
export const DEFAULT_MAX_PIXELS = 25_000_000;

export interface DecodeOptions {
  height: number;
  width: number;
  channels: 1 | 3;
  fit?: Fit;
  maxPixels?: number;
}

export interface Decoded {
  tensor: Tensor4D; // [1, H, W, C] in [0, 1]
  originalWidth: number;
  originalHeight: number;
  format: string;
}

export async function decodeImage(buf: Uint8Array, o: DecodeOptions): Promise<Decoded> {
  if (!(buf instanceof Uint8Array)) throw new PurifyError('BAD_INPUT', 'expected a Buffer/Uint8Array of encoded image bytes');
  if (buf.length === 0) throw new PurifyError('DECODE_FAILED', 'empty image');
  const maxPixels = o.maxPixels ?? DEFAULT_MAX_PIXELS;
  let meta: Awaited<ReturnType<ReturnType<typeof sharp>["metadata"]>>;
  try {
    meta = await sharp(buf, { limitInputPixels: maxPixels, failOn: 'error' }).metadata();
  } catch (e) {
    throw decodeError(e);
  }
  if (!meta.width || !meta.height || !meta.format) throw new PurifyError('DECODE_FAILED', 'not a decodable image');
  if (meta.width * meta.height > maxPixels) {
    throw new PurifyError('TOO_MANY_PIXELS', `image is ${meta.width}x${meta.height}, more than the ${maxPixels}-pixel limit`);
  }
  let raw: Buffer;
  try {
    let img = sharp(buf, { limitInputPixels: maxPixels, failOn: 'error', pages: 1 }).flatten({ background: '#000000' });
    img = o.channels === 1 ? img.grayscale() : img.toColourspace('srgb');
    img = img.resize(o.width, o.height, { fit: o.fit ?? 'contain', background: '#000000', kernel: 'lanczos3' });
    raw = await img.removeAlpha().raw().toBuffer();
  } catch (e) {
    throw decodeError(e);
  }
  const expected = o.width * o.height * o.channels;
  if (raw.length !== expected) {
    // grayscale() on some inputs keeps 3 identical channels in raw output: take one
    if (o.channels === 1 && raw.length === expected * 3) raw = Buffer.from(raw.filter((_, i) => i % 3 === 0));
    else throw new PurifyError('DECODE_FAILED', `decoder produced ${raw.length} bytes, expected ${expected}`);
  }
  const f = new Float32Array(expected);
  for (let i = 0; i < expected; i++) f[i] = raw[i] / 255;
  return { tensor: tf.tensor4d(f, [1, o.height, o.width, o.channels]), originalWidth: meta.width, originalHeight: meta.height, format: meta.format };
}

function decodeError(e: unknown): PurifyError {
  const msg = e instanceof Error ? e.message : String(e);
  if (/pixel limit|exceeds/i.test(msg)) return new PurifyError('TOO_MANY_PIXELS', `image exceeds the pixel limit (${msg})`);
  return new PurifyError('DECODE_FAILED', `cannot decode image: ${msg}`);
}

/** Encode one image [1,H,W,C] or [H,W,C] in [0,1] as PNG, optionally resized to `size`. */
export async function encodePng(x: tf.Tensor, size?: { width: number; height: number }): Promise<Buffer> {
  const t = x.rank === 4 ? x.squeeze([0]) : x;
  const [h, w, c] = t.shape as [number, number, number];
  const vals = await t.data();
  if (t !== x) t.dispose();
  const bytes = Buffer.alloc(vals.length);
  for (let i = 0; i < vals.length; i++) bytes[i] = Math.max(0, Math.min(255, Math.round(vals[i] * 255)));
  let img = sharp(bytes, { raw: { width: w, height: h, channels: c as 1 | 3 } });
  if (size && (size.width !== w || size.height !== h)) img = img.resize(size.width, size.height, { fit: 'fill', kernel: 'lanczos3' });
  // sharp would write raw 1-channel data as a 3-channel PNG unless told it is grayscale
  if (c === 1) img = img.toColourspace('b-w');
  return img.png().toBuffer();
}

/** 0/1 per pixel (row-major, width x height) -> 8-bit grayscale PNG, 255 where 1. */
export function encodeMaskPng(mask: Uint8Array, width: number, height: number): Promise<Buffer> {
  const bytes = Buffer.alloc(width * height);
  for (let i = 0; i < bytes.length; i++) bytes[i] = mask[i] ? 255 : 0;
  return sharp(bytes, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png().toBuffer();
}

/**
 * A rectangle in model pixels (width x height, after `fit`) mapped back onto the original image
 * (originalWidth x originalHeight): undoes the letterbox ('contain'), stretch ('fill') or centre crop
 * ('cover'), rounding outwards and clipping to the image; null when it falls outside (e.g. on the letterbox).
 */
export function toOriginalRect(r: Rect, size: { width: number; height: number; originalWidth: number; originalHeight: number }, fit: Fit = 'contain'): Rect | null {
  const { width: w, height: h, originalWidth: ow, originalHeight: oh } = size;
  // original pixels per model pixel: per axis for 'fill', one for both axes otherwise
  const one = (fit === 'contain' ? Math.max : Math.min)(ow / w, oh / h);
  // per axis: original = (model - offset) * per, where offset is the letterbox (> 0) or the crop (< 0)
  const axis = (model: number, orig: number) => {
    if (fit === 'fill') return { per: orig / model, offset: 0 };
    const scaled = Math.round(orig / one);
    return { per: one, offset: fit === 'contain' ? Math.floor((model - scaled) / 2) : -Math.floor((scaled - model) / 2) };
  };
  const [x, y] = [axis(w, ow), axis(h, oh)];
  const eps = 1e-9; // 6 * (42 / 28) must stay 9
  const left = Math.max(0, Math.floor((r.left - x.offset) * x.per + eps));
  const top = Math.max(0, Math.floor((r.top - y.offset) * y.per + eps));
  const right = Math.min(ow, Math.ceil((r.left + r.width - x.offset) * x.per - eps));
  const bottom = Math.min(oh, Math.ceil((r.top + r.height - y.offset) * y.per - eps));
  return right > left && bottom > top ? { left, top, width: right - left, height: bottom - top } : null;
}
