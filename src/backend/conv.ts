/**
 * A 'same'-padded conv with bias (and optional ReLU) in the cheaper form for how its result is used; the
 * U-Net and the classifier's folded inference form share it.
 *
 * - No gradient tape (inference): tfjs's fused conv, bias and activation inside the conv kernel (saves a
 *   full-size Add, and a ReLU, per conv).
 * - Under a tape: plain Conv2D + Add (+ Relu). tfjs's fused conv computes the gradients of all its inputs
 *   eagerly (its customGrad), the filter's too: the costliest part, wasted when only d/dx is wanted
 *   (attacks through the purifier or the classifier) or when x is the constant input image (training).
 *   The plain ops' gradients are lazy: the tape asks only for those on its path. (A fused forward with
 *   all three gradients written out, for training, measured no faster: 2026-11-29, interleaved A/B.)
 */
import { tf } from './tf.js';
import type { Tensor, Tensor4D } from './tf.js';

export function convBias(x: Tensor4D, filter: Tensor4D, bias: Tensor, stride = 1, activation: 'linear' | 'relu' = 'linear'): Tensor4D {
  if (!tf.engine().isTapeOn()) return tf.fused.conv2d({ x, filter, strides: stride, pad: 'same', bias, activation });
  const y = tf.conv2d(x, filter, stride, 'same').add(bias) as Tensor4D;
  return activation === 'relu' ? y.relu() : y;
}
