/**
 * Answers that are values when they can be and promises only when they must be.
 *
 * Most policy questions are answered from tables in memory, a few from LDAP or DNS. An `async` check pays a
 * promise and a microtask turn for every `await`, even on a value: a large share of a policy request in the
 * benchmark. A check written as a generator instead (`run = steps(function* () { … yield* wait(x) … })`) runs
 * straight through while its answers are values and turns into a promise at the first one that is not. No
 * library does this for plain generators (co-routine libraries always return promises), so it is written here.
 */

/** A value now, or a promise of it. */
export type Answer<T> = T | Promise<T>;

/** Applies `f` to an answer, at once when it is a value. */
export function mapAnswer<T, U>(answer: Answer<T>, f: (value: T) => U): Answer<U> {
  return answer instanceof Promise ? answer.then(f) : f(answer);
}

/** Two answers together: both values at once when both are values, else one promise of both (asked in parallel). */
export function both<A, B>(a: Answer<A>, b: Answer<B>): Answer<[A, B]> {
  return a instanceof Promise || b instanceof Promise ? Promise.all([a, b]) : [a, b];
}

/**
 * The steps of a maybe-synchronous computation. Its next-value type is `never` so that a step can only get a
 * value through `yield* wait(…)`, which gives it its type.
 */
export type Steps<R> = Generator<unknown, R, never>;

/** Inside `steps`: the value of an answer, waiting only when it is a promise. */
export function* wait<T>(answer: Answer<T>): Generator<Answer<T>, T, T> {
  return yield answer;
}

/** Runs the steps: their result now when every answer was a value, else a promise of it. */
export function run<R>(steps: Steps<R>): Answer<R> {
  return advance(steps, steps.next());
}

function advance<R>(steps: Steps<R>, step: IteratorResult<unknown, R>): Answer<R> {
  // `never` keeps callers honest (see Steps); the runner is the one place that feeds values back.
  const resume = steps as unknown as Generator<unknown, R, unknown>;
  while (!step.done) {
    const value = step.value;
    if (value instanceof Promise) {
      return value.then(
        (resolved: unknown) => advance(steps, resume.next(resolved)),
        (error: unknown) => advance(steps, resume.throw(error)),
      );
    }
    step = resume.next(value);
  }
  return step.value;
}

/** Wraps a generator function into one that returns an answer: `steps(function* (x) { … })`. */
export function steps<A extends unknown[], R>(body: (...args: A) => Steps<R>): (...args: A) => Answer<R> {
  return (...args: A) => run(body(...args));
}
