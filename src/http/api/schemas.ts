/**
 * JSON schemas shared by the admin API's routes: they validate input (fastify answers 400 before a handler
 * runs), shape the responses (fast-json-stringify drops what a schema does not name) and write the OpenAPI
 * document (docs/openapi.json).
 */
import { QUEUE_ID_PATTERN } from '../../core/decisions.js';
import { QUARANTINE_ID_PATTERN } from '../../core/quarantine.js';

/** Every error answer: a sentence saying what is wrong and what to do, and sometimes a stable code. */
export const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: { error: { type: 'string' }, code: { type: 'string' } },
} as const;

/** The error answers of a route, by status. */
export function errors(...statuses: number[]): Record<number, typeof errorSchema> {
  const all = [400, 401, 503, ...statuses];
  return Object.fromEntries(all.map((status) => [status, errorSchema]));
}

export const quarantineIdParams = {
  type: 'object',
  required: ['id'],
  properties: {
    id: {
      type: 'string',
      pattern: QUARANTINE_ID_PATTERN,
      description: 'A quarantine id: YYYYMMDD-16 hex digits',
    },
  },
} as const;

export const queueIdParams = {
  type: 'object',
  required: ['queueId'],
  properties: {
    queueId: { type: 'string', pattern: QUEUE_ID_PATTERN, description: "Postfix's queue id of the message" },
  },
} as const;

const stringList = { type: 'array', items: { type: 'string' } } as const;

export const quarantineEntrySchema = {
  type: 'object',
  required: ['id', 'time', 'scanner', 'symbol', 'reason', 'releasableBy', 'sender', 'recipients', 'size'],
  properties: {
    id: { type: 'string' },
    time: { type: 'number', description: 'ms since the epoch' },
    scanner: { type: 'string' },
    symbol: { type: 'string' },
    reason: { type: 'string' },
    releasableBy: { type: 'string' },
    sender: { type: 'string' },
    recipients: stringList,
    size: { type: 'integer' },
    subject: { type: 'string' },
    messageId: { type: 'string' },
    queueId: { type: 'string' },
    released: {
      ...stringList,
      description: 'Recipients who released it for themselves (a signed link); it stays held for the others',
    },
  },
} as const;

export const releaseMarkerSchema = {
  type: 'object',
  required: ['id', 'at', 'by', 'recipients'],
  properties: {
    id: { type: 'string' },
    at: { type: 'string' },
    by: { type: 'string' },
    recipients: stringList,
  },
} as const;

/** 409/410 answers about a message released already carry the release. */
export const releasedErrorSchema = {
  type: 'object',
  required: ['error', 'release'],
  properties: { error: { type: 'string' }, release: releaseMarkerSchema },
} as const;

const verdictSchema = {
  type: 'object',
  required: ['check', 'symbol', 'score', 'mode', 'reason'],
  properties: {
    check: { type: 'string' },
    symbol: { type: 'string' },
    score: { type: 'number' },
    action: { type: 'string' },
    mode: { type: 'string' },
    reason: { type: 'string' },
  },
} as const;

export const decisionRecordSchema = {
  type: 'object',
  required: ['face', 'time', 'action', 'score', 'verdicts'],
  properties: {
    face: { type: 'string', enum: ['policy', 'filter'] },
    time: { type: 'string' },
    instance: { type: 'string' },
    state: { type: 'string' },
    client: { type: 'string' },
    sender: { type: 'string' },
    recipients: stringList,
    action: { type: 'string' },
    score: { type: 'number' },
    verdicts: { type: 'array', items: verdictSchema },
    failures: {
      type: 'array',
      items: {
        type: 'object',
        required: ['check', 'code', 'reason'],
        properties: { check: { type: 'string' }, code: { type: 'string' }, reason: { type: 'string' } },
      },
    },
    reply: { type: 'string' },
    quarantineId: { type: 'string' },
  },
} as const;

export const runtimeEntrySchema = {
  type: 'object',
  required: ['list', 'key', 'value', 'by', 'at'],
  properties: {
    list: { type: 'string' },
    key: { type: 'string' },
    value: { type: 'string' },
    by: { type: 'string' },
    at: { type: 'string' },
  },
} as const;
