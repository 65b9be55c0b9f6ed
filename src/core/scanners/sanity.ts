/**
 * sanity — what the parser found wrong with the message's structure. Broken MIME is tolerated (the message is
 * still scanned and delivered) and scored, because a message that hides its structure often hides its content;
 * a message the parser had to stop on (past `filter.parse` bounds) is scored higher, and the antivirus still
 * reads it whole.
 *
 * Symbols: MIME_PROBLEM (per problem, up to `max_problems` counted), MIME_LIMITS, MESSAGE_EMPTY.
 */
import { z } from 'zod';
import type { ContentScanner, ScanVerdict } from '../content.js';
import { modeSchema, scoreSchema } from '../schema.js';

export const sanitySchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    problem_score: scoreSchema
      .default(0.5)
      .describe('Score per structural problem (bad encoding, broken boundary)'),
    max_problems: z.number().int().min(1).max(100).default(4).describe('Problems counted at most'),
    limits_score: scoreSchema
      .default(2)
      .describe('Score when the parser stopped at a bound (depth, parts, bytes)'),
    empty_score: scoreSchema.default(1).describe('Score for a message without a body'),
  })
  .describe('Message structure sanity (MIME)');

export type SanitySettings = z.infer<typeof sanitySchema>;

export function createSanityScanner(settings: SanitySettings): ContentScanner {
  return {
    name: 'sanity',
    scan(message): ScanVerdict[] {
      const verdicts: ScanVerdict[] = [];
      for (const problem of message.problems.slice(0, settings.max_problems)) {
        verdicts.push({
          scanner: 'sanity',
          symbol: 'MIME_PROBLEM',
          score: settings.problem_score,
          reason: problem,
        });
      }
      if (message.limitsHit) {
        verdicts.push({
          scanner: 'sanity',
          symbol: 'MIME_LIMITS',
          score: settings.limits_score,
          reason: 'the MIME structure goes past the parse bounds (depth, parts or bytes)',
        });
      }
      if (message.parts.every((part) => part.size === 0)) {
        verdicts.push({
          scanner: 'sanity',
          symbol: 'MESSAGE_EMPTY',
          score: settings.empty_score,
          reason: 'no body',
        });
      }
      return verdicts;
    },
  };
}
