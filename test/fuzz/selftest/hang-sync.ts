import { misbehaving } from './misbehave.js';

export default misbehaving('hang-sync');
