/** postwarden's version, from package.json (read once; the build keeps package.json three levels up). */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const VERSION: string = (require('../../../package.json') as { version: string }).version;
