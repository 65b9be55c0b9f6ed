/**
 * What the generator knows about the live mail host: Postfix's version and the main.cf values it merges with,
 * the master.cf services already there, and Dovecot's version. An adapter (src/adapters/host.ts) reads them with
 * `postconf` and `dovecot --version`; `generate` without a reachable host uses hostFactsDefault(). A plain record,
 * so that the renderers stay pure and their tests need no Postfix.
 */

/** One master.cf service as `postconf -M` prints it. `options` are its `-o name=value` overrides, in order. */
export interface MasterEntry {
  readonly service: string;
  readonly type: string;
  readonly private: string;
  readonly unpriv: string;
  readonly chroot: string;
  readonly wakeup: string;
  readonly maxproc: string;
  readonly command: string;
  readonly options: readonly (readonly [string, string])[];
}

export interface HostFacts {
  /** Postfix's mail_version, e.g. `3.7.11`; '' = unknown (no Postfix reachable). */
  readonly postfixVersion: string;
  /** Postfix's config_directory (absolute). */
  readonly configDirectory: string;
  /** Postfix's queue_directory: a relative `unix:` policy socket path is resolved against it. */
  readonly queueDirectory: string;
  /** These four with `$name` expanded: what a fresh postwarden config is written from. */
  readonly myhostname: string;
  readonly mydestination: string;
  readonly virtualMailboxDomains: string;
  readonly mynetworks: string;
  /**
   * main.cf parameters the renderer merges with or checks (smtpd_relay_restrictions, content_filter, ...): the
   * value as written in main.cf when it is set there (so `$name` references stay), else Postfix's default with
   * `$name` expanded. A name that is absent counts as empty.
   */
  readonly main: Readonly<Record<string, string>>;
  /** master.cf as it is. */
  readonly master: readonly MasterEntry[];
  /** `dovecot --version`, e.g. `2.3.19.1`; '' = no Dovecot found. */
  readonly dovecotVersion: string;
}

/** Postfix's own defaults (3.6+ compatibility level) for a render without a live host. */
export function hostFactsDefault(configDirectory = '/etc/postfix'): HostFacts {
  return {
    postfixVersion: '',
    configDirectory,
    queueDirectory: '/var/spool/postfix',
    myhostname: '',
    mydestination: '',
    virtualMailboxDomains: '',
    mynetworks: '',
    main: {
      smtpd_relay_restrictions: 'permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination',
      smtpd_recipient_restrictions: '',
      smtpd_data_restrictions: '',
      smtpd_end_of_data_restrictions: '',
      receive_override_options: '',
      content_filter: '',
      smtpd_tls_security_level: 'may',
    },
    master: [],
    dovecotVersion: '',
  };
}

/** Something on the host postwarden must not overwrite or share, named, with the way out. */
export interface Conflict {
  readonly what: string;
  readonly fix: string;
}

/** Postfix's smtpd restriction lists, in the order smtpd evaluates them. */
export const RESTRICTION_LISTS = [
  'smtpd_client_restrictions',
  'smtpd_helo_restrictions',
  'smtpd_sender_restrictions',
  'smtpd_relay_restrictions',
  'smtpd_recipient_restrictions',
  'smtpd_data_restrictions',
  'smtpd_end_of_data_restrictions',
] as const;
