/** Test images for the patch defence over HTTP: a Fashion-MNIST fixture image with a pasted square. */
import sharp from 'sharp';
import { loadFixture } from '../src/data/index.js';
import type { Rect } from '../src/purify/index.js';

/** Where the square sits (model pixels; the PNG is 28x28, so upload pixels too). */
export const SQUARE: Rect = { left: 15, top: 4, width: 6, height: 6 };

/** Fixture image `index` with a black-and-white checkerboard (a high-contrast patch) pasted at SQUARE, as a grayscale PNG. */
export function patchedFixturePng(index = 0): Promise<Buffer> {
  const ds = loadFixture();
  const px = Buffer.from(Uint8Array.from(ds.images.subarray(index * 784, (index + 1) * 784), (v) => Math.round(v * 255)).buffer);
  for (let r = 0; r < SQUARE.height; r++) {
    for (let c = 0; c < SQUARE.width; c++) px[(SQUARE.top + r) * 28 + SQUARE.left + c] = (r + c) % 2 ? 255 : 0;
  }
  return sharp(px, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
}

/** Of a 0/1 mask (row-major, w wide): the share of SQUARE it covers and its IoU with SQUARE. */
export function overlap(mask: ArrayLike<number>, w = 28): { cover: number; iou: number } {
  let [inter, area] = [0, 0];
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    area++;
    const [r, c] = [Math.floor(i / w), i % w];
    if (r >= SQUARE.top && r < SQUARE.top + SQUARE.height && c >= SQUARE.left && c < SQUARE.left + SQUARE.width) inter++;
  }
  const sq = SQUARE.width * SQUARE.height;
  return { cover: inter / sq, iou: inter / (area + sq - inter) };
}
