import { misbehaving } from './misbehave.js';

export default misbehaving('property');
