/** Admin services for HTTP tests that do not exercise the admin API: only the instance status is there. */
import type { AdminServices } from '../../src/admin/index.js';
import { instanceStatus } from '../../src/admin/status.js';

export function statusOnlyAdmin(instance = 'test'): AdminServices {
  return {
    status: () => instanceStatus({ instance, startedAt: new Date(), faces: () => [], readiness: () => [] }),
  };
}
