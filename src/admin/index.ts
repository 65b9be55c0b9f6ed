/**
 * The admin operations, one implementation behind the admin API (src/http/api) and the CLI (src/cli): each
 * service is present when what it acts on exists in this process (a store, a quarantine directory, the lists
 * check), and the API answers 503 naming what is missing otherwise.
 */
import type { Store } from '../core/store.js';
import type { GreylistAdminSettings } from './greylist.js';
import type { ListOps } from './lists.js';
import type { QuarantineOps } from './quarantine.js';
import type { InstanceStatus } from './status.js';

export interface AdminServices {
  readonly quarantine?: QuarantineOps;
  /** The store greylisting keeps its state in, and the settings its keys follow. */
  readonly greylist?: { readonly store: Store; readonly settings: GreylistAdminSettings };
  readonly lists?: ListOps;
  /** The store decision records are filed in. */
  readonly decisions?: Store;
  readonly status: () => InstanceStatus;
}
