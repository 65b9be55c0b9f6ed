/**
 * One deadline helper for every "answer within N ms or fail" in the product (DNS queries, content scanners,
 * whole messages): settles like `pending`, or rejects with `timeout()` when `ms` pass first (then runs
 * `onTimeout`, e.g. to abort the work). The timer never outlives the race.
 */
export function withDeadline<T>(
  pending: Promise<T>,
  ms: number,
  timeout: () => Error,
  onTimeout?: () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(timeout());
      onTimeout?.();
    }, ms);
    pending.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
