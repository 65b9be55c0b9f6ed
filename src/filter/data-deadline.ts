/**
 * The deadline of one message's DATA phase, from the 354 that opens it to the final dot (filter.data_timeout_s).
 * smtp-server's idle timeout (filter.idle_timeout_s) starts again at every byte, so without it a client that
 * trickles its message, a byte every few seconds, keeps its connection slot for as long as it likes, and a few
 * such clients take every slot while Postfix's deliveries to the filter wait.
 *
 * When the deadline passes before the final dot, the data stream is destroyed with a DataDeadline error: the
 * spool's write fails and removes its file (nothing of the message was acknowledged), the service answers
 * 451 4.4.2 so that Postfix keeps the message and retries, and the server closes the connection, which frees
 * the slot. A stream that ends or closes first (the final dot, the client gone) clears the timer.
 *
 * One total deadline rather than a minimum rate: Postfix's smtpd_min_data_rate (with smtpd_per_request_deadline)
 * credits N/rate seconds for every N bytes read, capped at smtpd_timeout. That lets a message of any size through
 * at the rate, so a client at the default 500 bytes/s holds a slot for a day with a 50 MB message. The filter's
 * client is Postfix on loopback, which sends at disk speed, and filter.max_message_bytes caps the size: a fixed
 * deadline bounds a slot absolutely and leaves a healthy transfer far inside it (50 MiB in 600 s is 87 KB/s).
 */
import type { Duplex } from 'node:stream';

/** The DATA phase of a message was not finished within filter.data_timeout_s. */
export class DataDeadline extends Error {
  override readonly name = 'DataDeadline';
}

/** A DATA stream as smtp-server hands it over: `byteLength` counts the message bytes received so far. */
export type DataStream = Duplex & { readonly byteLength?: number };

export interface DataDeadlineWatch {
  /** True once the deadline passed before the final dot (the stream was destroyed). */
  readonly expired: boolean;
  /** Clears the timer (idempotent); the stream's end or close does it too. */
  clear(): void;
}

/**
 * Arms the deadline on `data`, the stream the DATA bytes are written into. The final dot ends its writable side
 * (`end()`): from then on the deadline no longer applies, even if the reader is still behind.
 */
export function watchDataDeadline(data: DataStream, ms: number): DataDeadlineWatch {
  let expired = false;
  const clear = () => {
    clearTimeout(timer);
    data.off('finish', clear);
    data.off('close', clear);
  };
  const timer = setTimeout(() => {
    clear();
    if (data.writableEnded || data.destroyed) return;
    expired = true;
    // Whoever reads the stream hears the reason; without a reader, the error must not crash the process.
    if (data.listenerCount('error') === 0) data.on('error', () => undefined);
    data.destroy(
      new DataDeadline(
        `message data not received in full within filter.data_timeout_s (${ms / 1000} s): ` +
          `${data.byteLength ?? 0} bytes came`,
      ),
    );
  }, ms);
  data.once('finish', clear);
  data.once('close', clear);
  return {
    get expired() {
      return expired;
    },
    clear,
  };
}
