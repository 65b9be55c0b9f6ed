/**
 * The policy request as the core sees it: Postfix's attributes (SMTPD_POLICY_README, versions 2.1–3.12) parsed
 * into typed fields. Unknown attributes are ignored; none is required but `request`, which the codec checks.
 * Unavailable values arrive absent, empty, or `0` for numbers (protocols.md A1): all read as '' or 0 here.
 */

export type ProtocolState =
  'CONNECT' | 'EHLO' | 'HELO' | 'MAIL' | 'RCPT' | 'DATA' | 'END-OF-MESSAGE' | 'VRFY' | 'ETRN' | 'UNKNOWN';

const STATES: ReadonlySet<string> = new Set([
  'CONNECT',
  'EHLO',
  'HELO',
  'MAIL',
  'RCPT',
  'DATA',
  'END-OF-MESSAGE',
  'VRFY',
  'ETRN',
]);

export interface PolicyRequest {
  readonly request: string;
  readonly protocolState: ProtocolState;
  readonly protocolName: string;
  readonly heloName: string;
  readonly queueId: string;
  /** MAIL FROM address; '' for the null sender `<>`. */
  readonly sender: string;
  /** RCPT TO address; at DATA/END-OF-MESSAGE only when exactly one recipient was accepted. */
  readonly recipient: string;
  /** Non-zero only at DATA and END-OF-MESSAGE. */
  readonly recipientCount: number;
  readonly clientAddress: string;
  /** Verified client hostname, or `unknown`. */
  readonly clientName: string;
  readonly reverseClientName: string;
  readonly instance: string;
  readonly saslMethod: string;
  readonly saslUsername: string;
  readonly saslSender: string;
  /** MAIL FROM SIZE=, or the real size at END-OF-MESSAGE. */
  readonly size: number;
  readonly serverAddress: string;
  readonly policyContext: string;
  readonly ccertSubject: string;
  readonly ccertIssuer: string;
  readonly ccertFingerprint: string;
  readonly encryptionProtocol: string;
  /** Every attribute as received, for checks that need one not modelled above. */
  readonly attributes: Readonly<Record<string, string>>;
}

/** Reads a non-negative decimal; anything else (absent, empty, junk, overflow) is 0, as "unavailable". */
function count(value: string | undefined): number {
  if (value === undefined || !/^\d{1,15}$/.test(value)) return 0;
  return Number(value);
}

/** Postfix xtext-encodes `ccert_*` values since 2.2.11 (`+XX` hex escapes, RFC 3461). */
export function decodeXtext(value: string): string {
  if (!value.includes('+')) return value;
  return value.replace(/\+([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

export function toPolicyRequest(attributes: Readonly<Record<string, string>>): PolicyRequest {
  const a = (name: string): string => attributes[name] ?? '';
  const state = a('protocol_state').toUpperCase();
  return {
    request: a('request'),
    protocolState: (STATES.has(state) ? state : 'UNKNOWN') as ProtocolState,
    protocolName: a('protocol_name'),
    heloName: a('helo_name'),
    queueId: a('queue_id'),
    sender: a('sender'),
    recipient: a('recipient'),
    recipientCount: count(attributes['recipient_count']),
    clientAddress: a('client_address'),
    clientName: a('client_name'),
    reverseClientName: a('reverse_client_name'),
    instance: a('instance'),
    saslMethod: a('sasl_method'),
    saslUsername: a('sasl_username'),
    saslSender: a('sasl_sender'),
    size: count(attributes['size']),
    serverAddress: a('server_address'),
    policyContext: a('policy_context'),
    ccertSubject: decodeXtext(a('ccert_subject')),
    ccertIssuer: decodeXtext(a('ccert_issuer')),
    ccertFingerprint: decodeXtext(a('ccert_fingerprint')),
    encryptionProtocol: a('encryption_protocol'),
    attributes,
  };
}

/** The domain part of an address, lower-cased; '' when there is none (null sender, bare local part). */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

/** The local part of an address (everything before the last `@`). */
export function localPartOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? address : address.slice(0, at);
}
