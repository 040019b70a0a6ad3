/**
 * JSON Schemas for what a client may send, and their ajv validators. The schemas bound the work one
 * request can ask for (steps, draws) tighter than the library does; cross-field rules (steps <= tStar)
 * come from the library's own `resolveOptions`, so the API, the CLI and the middleware agree.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { LIMITS, MODES, RESTORERS, resolveOptions, type PurifyOptions, type ResolvedOptions } from '../purify/options.js';
import { HttpError } from './errors.js';

/** Per-request bounds: what one HTTP request may ask for. */
export const REQUEST_LIMITS = { maxSteps: 50, maxDraws: 16, maxTStar: LIMITS.T, maxSigma: LIMITS.maxSigma, maxSeed: LIMITS.maxSeed } as const;

export const OPTION_NAMES = ['mode', 'tStar', 'steps', 'sampler', 'sigma', 'seed', 'draws', 'guidance', 'restorer'] as const;
export type OptionName = (typeof OPTION_NAMES)[number];
export type ClientOptions = Pick<PurifyOptions, OptionName>;

/** The options a client may send (in the query string or as JSON `options`). */
export const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    mode: { enum: [...MODES] },
    tStar: { type: 'integer', minimum: 1, maximum: REQUEST_LIMITS.maxTStar },
    steps: { type: 'integer', minimum: 1, maximum: REQUEST_LIMITS.maxSteps },
    sampler: { enum: ['ddpm', 'ddim'] },
    sigma: { type: 'number', exclusiveMinimum: 0, maximum: REQUEST_LIMITS.maxSigma },
    seed: { type: 'integer', minimum: 0, maximum: REQUEST_LIMITS.maxSeed },
    draws: { type: 'integer', minimum: 1, maximum: REQUEST_LIMITS.maxDraws },
    guidance: { type: 'number', minimum: 0, maximum: LIMITS.maxGuidance },
    restorer: { enum: [...RESTORERS] },
  },
} as const;

/** A JSON request body: `{ "image": "<base64 or data: URL>", "options": { ... } }`. */
export const jsonBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['image'],
  properties: {
    image: { type: 'string', minLength: 1 },
    options: optionsSchema,
  },
} as const;

const strict = new Ajv({ allErrors: false, strict: true });
const validateJsonBody = strict.compile(jsonBodySchema);
const validateOptions = strict.compile(optionsSchema);
// Query strings carry strings: coerce "10" -> 10 on a copy; arrays (?steps=1&steps=2) are not coerced and fail.
const coercing = new Ajv({ allErrors: false, strict: true, coerceTypes: true });
const validateQuery = coercing.compile(optionsSchema);

function fail(errors: ErrorObject[] | null | undefined, topLevel: 'option' | 'field'): never {
  const e = errors?.[0];
  if (!e) throw new HttpError(400, 'BAD_REQUEST', 'invalid request');
  if (e.keyword === 'additionalProperties') {
    const name = String((e.params as { additionalProperty: string }).additionalProperty);
    const what = e.instancePath === '/options' ? 'option' : topLevel;
    throw new HttpError(400, what === 'option' ? 'UNKNOWN_OPTION' : 'UNKNOWN_FIELD', `unknown ${what} "${name}"`, name);
  }
  if (e.keyword === 'required') {
    const name = String((e.params as { missingProperty: string }).missingProperty);
    throw new HttpError(400, name === 'image' ? 'MISSING_IMAGE' : 'BAD_REQUEST', `missing "${name}"`, name);
  }
  const field = e.instancePath.replace(/^\/(options\/)?/, '').replace(/\//g, '.');
  if (!field) throw new HttpError(400, 'BAD_REQUEST', `${topLevel === 'option' ? 'options' : 'request body'} ${e.message ?? 'is invalid'}`);
  const allowed = e.keyword === 'enum' ? ` (${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')})` : '';
  throw new HttpError(400, field === 'image' ? 'BAD_REQUEST' : 'BAD_OPTION', `${field} ${e.message ?? 'is invalid'}${allowed}`, field);
}

/** Validate a copy of `req.query` (Express 5 re-parses it on every access). Returns typed options. */
export function parseQueryOptions(query: unknown): ClientOptions {
  const copy: Record<string, unknown> = { ...(query as Record<string, unknown>) };
  if (!validateQuery(copy)) fail(validateQuery.errors, 'option');
  return copy as ClientOptions;
}

export function parseJsonOptions(options: unknown): ClientOptions {
  if (!validateOptions(options)) fail(validateOptions.errors, 'option');
  return options as ClientOptions;
}

export function parseJsonBody(body: unknown): { image: string; options?: ClientOptions } {
  if (!validateJsonBody(body)) fail(validateJsonBody.errors, 'field');
  return body as { image: string; options?: ClientOptions };
}

/**
 * Merge the mounting app's options with a client's, enforcing which options clients may set,
 * then resolve (cross-field checks, defaults) with the library's validator.
 */
export function mergeOptions(base: PurifyOptions, client: ClientOptions | undefined, allow: readonly OptionName[]): ResolvedOptions {
  const given = Object.keys(client ?? {}) as OptionName[];
  for (const k of given) {
    if (!allow.includes(k)) throw new HttpError(400, 'OPTION_NOT_ALLOWED', `this endpoint does not accept the option "${k}"`, k);
  }
  try {
    return resolveOptions({ ...base, ...client, validate: false });
  } catch (e) {
    const f = (e as { field?: string }).field;
    throw new HttpError(400, 'BAD_OPTION', e instanceof Error ? e.message : String(e), f);
  }
}
