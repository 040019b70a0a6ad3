/** Every degradation by name. Entries keep their own type: `sync: true` ones have a synchronous `apply`. */
import type { Degradation } from './common.js';
import { gaussianBlur, motionBlur } from './blur.js';
import { channelShuffle, hueShift, saturation } from './colour.js';
import { bitDepth, pixelate } from './digital.js';
import { jpeg, jpegDct } from './jpeg.js';
import { gaussianNoise, inconsistentNoise, perlinNoise, uniformNoise } from './noise.js';
import { pastePatches, scramblePatches } from './patches.js';
import { contrast, exposure, gamma } from './photometric.js';

export const DEGRADATIONS = {
  'gaussian-noise': gaussianNoise,
  'uniform-noise': uniformNoise,
  'inconsistent-noise': inconsistentNoise,
  'perlin-noise': perlinNoise,
  'gaussian-blur': gaussianBlur,
  'motion-blur': motionBlur,
  jpeg,
  'jpeg-dct': jpegDct,
  pixelate,
  'bit-depth': bitDepth,
  exposure,
  contrast,
  gamma,
  'hue-shift': hueShift,
  saturation,
  'channel-shuffle': channelShuffle,
  'paste-patches': pastePatches,
  'scramble-patches': scramblePatches,
} as const satisfies Record<string, Degradation>;

export type DegradationName = keyof typeof DEGRADATIONS;
export const DEGRADATION_NAMES = Object.keys(DEGRADATIONS) as DegradationName[];

/** The degradations that act on images with `channels` channels (the RGB-only ones need 3). */
export function degradationsFor(channels: number): DegradationName[] {
  return DEGRADATION_NAMES.filter((n) => channels === 3 || DEGRADATIONS[n].channels === 'any');
}

export function getDegradation(name: string): Degradation {
  const d = (DEGRADATIONS as Record<string, Degradation>)[name];
  if (!d) throw new RangeError(`unknown degradation "${name}" (expected one of ${DEGRADATION_NAMES.join(', ')})`);
  return d;
}
