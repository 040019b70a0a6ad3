/** IDX file format (LeCun's MNIST container), optionally gzipped. */
import { gunzipSync } from 'node:zlib';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

export class IdxFormatError extends Error {
  readonly code = 'IDX_FORMAT';
}

/** Parse an IDX buffer of unsigned bytes (type 0x08), gzipped or not. */
export function parseIdx(buf: Uint8Array): IdxArray {
  let b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) b = gunzipSync(b);
  if (b.length < 4) throw new IdxFormatError(`IDX: ${b.length} bytes is too short for a header`);
  if (b[0] !== 0 || b[1] !== 0) throw new IdxFormatError('IDX: bad magic (first two bytes must be zero)');
  if (b[2] !== 0x08) throw new IdxFormatError(`IDX: only unsigned-byte data (0x08) is supported, got 0x${b[2].toString(16)}`);
  const rank = b[3];
  if (rank < 1 || b.length < 4 + 4 * rank) throw new IdxFormatError(`IDX: truncated header for rank ${rank}`);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(b.readUInt32BE(4 + 4 * i));
  const count = dims.reduce((p, q) => p * q, 1);
  const start = 4 + 4 * rank;
  if (b.length - start !== count) {
    throw new IdxFormatError(`IDX: header promises ${count} values (${dims.join('x')}), body has ${b.length - start}`);
  }
  return { dims, data: new Uint8Array(b.buffer, b.byteOffset + start, count) };
}

/** Encode unsigned bytes as IDX (used to write the committed fixture). */
export function encodeIdx(dims: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
}
