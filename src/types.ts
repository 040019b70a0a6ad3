/** Interfaces shared by purify/, attacks/, certify/ and the middleware. Images: [N,H,W,C] float32 in [0,1]. */
import type { Tensor2D, Tensor4D } from './backend/index.js';

/** A differentiable classifier: images in [0,1] -> logits [N, classes]. */
export interface Classifier {
  readonly name: string;
  readonly inputShape: [number, number, number]; // [H, W, C]
  readonly classNames: string[];
  /** Logits; pure tf ops (differentiable), caller disposes the result. */
  predict(x: Tensor4D): Tensor2D;
  dispose(): void;
}

/** A function from images to logits: what attacks and certification need. */
export type LogitsFn = (x: Tensor4D) => Tensor2D;
