/** Greylisting's pure pieces: sender normalisation, client networks, and the store key scheme. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  clientNetwork,
  normalizeSender,
  readTripletValue,
  splitTripletKey,
  tripletKey,
} from '../../src/core/checks/greylist.js';

const senders: [string, string][] = [
  ['', '<>'],
  ['News@Sender.TEST', 'news@sender.test'],
  ['news+bounce-4711@sender.test', 'news@sender.test'],
  ['bounce-12345-67@lists.test', 'bounce-#-#@lists.test'],
  ['user123@sender.test', 'user123@sender.test'],
  ['prvs=1234abcd=orig@sender.test', 'orig@sender.test'],
  ['SRS0=HHH=TT=sender.test=orig@forwarder.test', 'orig@sender.test'],
  ['SRS1=HHH=first.test==HHH=TT=sender.test=orig@second.test', 'orig@sender.test'],
  ['"john|doe"@sender.test', '"john|doe"@sender.test'],
];
for (const [given, expected] of senders) {
  test(`normalizeSender ${JSON.stringify(given)} → ${expected}`, () =>
    assert.equal(normalizeSender(given, '+'), expected));
}

test('clientNetwork: /24, /64, IPv4-mapped folded, non-addresses as given', () => {
  assert.equal(clientNetwork('198.51.100.7', 24, 64), '198.51.100.0/24');
  assert.equal(clientNetwork('2001:db8:1:2::10', 24, 64), '2001:db8:1:2::/64');
  assert.equal(clientNetwork('::ffff:198.51.100.7', 24, 64), '198.51.100.0/24');
  assert.equal(clientNetwork('Unknown', 24, 64), 'unknown');
});

test('triplet keys split back exactly, also with | and % in quoted local parts', () => {
  for (const [sender, recipient] of [
    ['a@b.test', 'c@d.test'],
    ['"x|y"@b.test', '"50%|off"@d.test'],
    ['"%7C"@b.test', 'c@d.test'],
  ] as const) {
    const key = tripletKey('198.51.100.0/24', sender, recipient);
    assert.deepEqual(splitTripletKey(key), { network: '198.51.100.0/24', sender, recipient });
  }
  assert.equal(splitTripletKey('awl:198.51.100.0/24'), undefined);
});

test('stored triplet values: waiting, passed, anything else unreadable', () => {
  assert.deepEqual(readTripletValue('W1700000000000'), { passed: false, firstSeen: 1700000000000 });
  assert.deepEqual(readTripletValue('P1'), { passed: true, firstSeen: 1 });
  for (const junk of ['', 'W', 'X12', 'Wabc']) assert.equal(readTripletValue(junk), undefined);
});
