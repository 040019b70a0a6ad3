/**
 * Getting image bytes and client options out of a request, three ways:
 * - multipart/form-data (multer, memory storage): file field `image`, optional text field `options` (JSON);
 * - a raw body with an image content type (or application/octet-stream);
 * - JSON `{ "image": "<base64 or data: URL>", "options": { ... } }`.
 * The bytes' magic numbers decide whether they are an image, never the declared type.
 * A body the app already parsed (express.json / express.raw mounted earlier) is used as is.
 */
import express, { type Request, type RequestHandler, type Response } from 'express';
import multer from 'multer';
import { HttpError } from './errors.js';
import { parseJsonBody, parseJsonOptions, parseQueryOptions, type ClientOptions } from './schemas.js';

export type ImageFormat = 'png' | 'jpeg' | 'gif' | 'webp' | 'tiff' | 'avif' | 'heif';

/** Sniff the container format from magic bytes; undefined for anything sharp should not be asked to decode. */
export function sniffImage(b: Uint8Array): ImageFormat | undefined {
  const at = (i: number, ...bytes: number[]) => bytes.every((v, k) => b[i + k] === v);
  const ascii = (i: number, s: string) => at(i, ...[...s].map((c) => c.charCodeAt(0)));
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (at(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return 'tiff';
  if (ascii(4, 'ftyp')) {
    const brand = String.fromCharCode(...b.subarray(8, 12));
    if (brand === 'avif' || brand === 'avis') return 'avif';
    if (['heic', 'heix', 'mif1', 'msf1'].includes(brand)) return 'heif';
  }
  return undefined;
}

export interface InputLimits {
  /** Largest accepted image in bytes (raw body or multipart file); JSON bodies get 4/3 of it for base64. */
  maxBytes: number;
}

export interface RequestInput {
  image: Buffer;
  format: ImageFormat;
  /** Options the client sent (query string or JSON/form `options`); undefined when none. */
  client?: ClientOptions;
  via: 'multipart' | 'raw' | 'json';
}

function run(mw: RequestHandler, req: Request, res: Response): Promise<void> {
  return new Promise((resolve, reject) => {
    void mw(req, res, (err?: unknown) => (err ? reject(err) : resolve()));
  });
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

function decodeBase64(s: string): Buffer {
  const data = s.startsWith('data:') ? s.slice(s.indexOf(',') + 1) : s;
  const compact = data.replace(/\s+/g, '');
  const ok = (BASE64.test(compact) && compact.length % 4 === 0) || BASE64URL.test(compact);
  if (!ok || compact.length === 0) throw new HttpError(400, 'BAD_BASE64', 'image is not valid base64', 'image');
  return Buffer.from(compact, BASE64.test(compact) ? 'base64' : 'base64url');
}

function parseOptionsField(s: unknown): ClientOptions | undefined {
  if (s === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(String(s));
  } catch {
    throw new HttpError(400, 'MALFORMED_JSON', 'form field "options" is not valid JSON', 'options');
  }
  return parseJsonOptions(v);
}

function hasBody(req: Request): boolean {
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0');
}

function mergeClient(a: ClientOptions | undefined, b: ClientOptions | undefined): ClientOptions | undefined {
  if (!a || Object.keys(a).length === 0) return b;
  if (!b) return a;
  return { ...a, ...b };
}

/** Build a reader for one mount point; it owns its parsers and limits. */
export function createInputReader(limits: InputLimits): (req: Request, res: Response, readQuery: boolean) => Promise<RequestInput> {
  const json = express.json({ limit: Math.ceil(limits.maxBytes * 1.4) + 4096, strict: true, type: ['application/json', 'application/*+json'] });
  const raw = express.raw({ limit: limits.maxBytes, type: () => true });
  const upload = multer({
    storage: multer.memoryStorage(),
    limits: { fileSize: limits.maxBytes, files: 1, fields: 1, parts: 2, fieldNameSize: 64, fieldSize: 4096, headerPairs: 32 },
  }).single('image');

  return async (req, res, readQuery) => {
    const query = readQuery ? parseQueryOptions(req.query) : undefined;
    let image: Buffer | undefined;
    let client: ClientOptions | undefined;
    let via: RequestInput['via'];
    const pre: unknown = (req as { body?: unknown }).body;
    if (req.is('multipart/form-data')) {
      via = 'multipart';
      await run(upload, req, res);
      const file = (req as { file?: { buffer: Buffer } }).file;
      if (!file) throw new HttpError(400, 'MISSING_IMAGE', 'multipart form has no file in field "image"', 'image');
      image = file.buffer;
      client = parseOptionsField((req.body as Record<string, unknown> | undefined)?.options);
    } else if (req.is(['application/json', 'application/*+json'])) {
      via = 'json';
      if (pre === undefined) await run(json, req, res);
      const body = parseJsonBody((req as { body?: unknown }).body);
      image = decodeBase64(body.image);
      client = body.options && parseJsonOptions(body.options);
    } else if (req.is(['image/*', 'application/octet-stream'])) {
      via = 'raw';
      if (!Buffer.isBuffer(pre)) await run(raw, req, res);
      const body: unknown = (req as { body?: unknown }).body;
      image = Buffer.isBuffer(body) ? body : Buffer.alloc(0);
    } else if (!hasBody(req) && !req.headers['content-type']) {
      throw new HttpError(400, 'EMPTY_BODY', 'request has no body: send an image (multipart field "image", raw image bytes, or JSON {"image": base64})');
    } else {
      throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', `unsupported content type ${JSON.stringify(req.headers['content-type'] ?? '')}: use multipart/form-data, image/*, application/octet-stream or application/json`);
    }
    if (image.length === 0) throw new HttpError(400, 'EMPTY_BODY', 'the image is empty', 'image');
    if (image.length > limits.maxBytes) throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `image is larger than ${limits.maxBytes} bytes`, 'image');
    const format = sniffImage(image);
    if (!format) throw new HttpError(415, 'UNSUPPORTED_IMAGE', 'the bytes are not a PNG, JPEG, GIF, WebP, TIFF or AVIF/HEIF image', 'image');
    return { image, format, client: mergeClient(query, client), via };
  };
}
