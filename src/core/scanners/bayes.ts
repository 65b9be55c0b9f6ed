/**
 * bayes — the trainable Bayesian classifier as a scanner: the message's tokens (core/spam/tokenize.ts) against
 * the counts learned so far (core/spam/bayes.ts, in the state store), as a probability and a scored symbol. It
 * stays silent until it has learned `min_spam` spam and `min_ham` ham messages: a classifier that knows too
 * little guesses, and a guess must not move mail.
 *
 * Symbols (probability → default score): BAYES_HAM_HIGH (< 0.01, −3), BAYES_HAM (< 0.2, −1),
 * BAYES_SPAM_LOW (≥ 0.4, 3), BAYES_SPAM (≥ 0.7, 4), BAYES_SPAM_HIGH (≥ 0.9, 5); nothing in between.
 * BAYES_SPAM alone stays under the tag score (5): a leaning classifier needs one more finding of the rules; a
 * sure one tags on its own. BAYES_SPAM_LOW, the unsure middle (graded as SpamAssassin's BAYES_40..60 are),
 * needs rule findings worth 2: by cross-validation on the benchmark's training half it caught spam that the
 * rules and a middling probability each only half-showed, and no ham there had both.
 */
import { z } from 'zod';
import type { ContentScanner, MessageFacts, ScanVerdict } from '../content.js';
import { modeSchema, scoreSchema } from '../schema.js';
import { type BayesModel, classify } from '../spam/bayes.js';
import { tokenize } from '../spam/tokenize.js';

export const bayesSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    min_spam: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(200)
      .describe('Spam messages learned before the classifier scores (SpamAssassin: 200)'),
    min_ham: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(200)
      .describe('Ham messages learned before it scores'),
    token_ttl_days: z
      .number()
      .int()
      .min(7)
      .max(3650)
      .default(180)
      .describe('Days a token is remembered after it was last learned'),
    max_tokens: z
      .number()
      .int()
      .min(100)
      .max(20_000)
      .default(3000)
      .describe('Distinct tokens read per message'),
    scores: z
      .strictObject({
        ham_high: scoreSchema.default(-3).describe('Probability below 0.01'),
        ham: scoreSchema.default(-1).describe('Probability below 0.2'),
        spam_low: scoreSchema
          .default(3)
          .describe('Probability 0.4 or more (unsure: counts with rule findings)'),
        spam: scoreSchema.default(4).describe('Probability 0.7 or more'),
        spam_high: scoreSchema.default(5).describe('Probability 0.9 or more'),
      })
      .prefault({})
      .describe('Score per probability band'),
    autolearn: z
      .strictObject({
        enabled: z.boolean().default(true).describe('Learn from messages the other scanners were sure about'),
        spam_at: scoreSchema
          .default(12)
          .describe('Learn as spam at this score of the other scanners or more'),
        ham_below: scoreSchema
          .default(-1)
          .describe(
            'Learn as ham below this score of the other scanners (negative by default: a score of 0 only says no rule fired)',
          ),
      })
      .prefault({})
      .describe('Learning from the filter’s own confident decisions (the Bayes score itself does not count)'),
  })
  .describe('Trainable Bayesian classifier (token counts in the state store)');

export type BayesSettings = z.infer<typeof bayesSchema>;

/** The band a probability falls in, as a symbol and its score; undefined in the unsure middle. */
export function bayesBand(
  probability: number,
  scores: BayesSettings['scores'],
): { symbol: string; score: number } | undefined {
  if (probability < 0.01) return { symbol: 'BAYES_HAM_HIGH', score: scores.ham_high };
  if (probability < 0.2) return { symbol: 'BAYES_HAM', score: scores.ham };
  if (probability >= 0.9) return { symbol: 'BAYES_SPAM_HIGH', score: scores.spam_high };
  if (probability >= 0.7) return { symbol: 'BAYES_SPAM', score: scores.spam };
  if (probability >= 0.4) return { symbol: 'BAYES_SPAM_LOW', score: scores.spam_low };
  return undefined;
}

export function bayesTokens(message: MessageFacts, settings: Pick<BayesSettings, 'max_tokens'>): string[] {
  return tokenize(message, { maxWords: 20_000, maxTokens: settings.max_tokens });
}

export function createBayesScanner(settings: BayesSettings, model: BayesModel): ContentScanner {
  return {
    name: 'bayes',
    async scan(message): Promise<ScanVerdict[]> {
      const learned = await model.learned();
      if (learned.spam < settings.min_spam || learned.ham < settings.min_ham) return [];
      const tokens = bayesTokens(message, settings);
      const { probability, clues } = classify(await model.counts(tokens), learned);
      const band = bayesBand(probability, settings.scores);
      if (!band) return [];
      const top = clues
        .slice(0, 5)
        .map(([token, f]) => `${token.slice(0, 30)}=${f.toFixed(2)}`)
        .join(' ');
      return [
        {
          scanner: 'bayes',
          symbol: band.symbol,
          score: band.score,
          reason: `spam probability ${probability.toFixed(3)} from ${clues.length} clues (${top})`,
        },
      ];
    },
  };
}
