/**
 * Test messages for the mail harness: CRLF line ends, `X-Pw-Test: <tag>` to find them again in a Maildir
 * (harness.ts `tagged`).
 */

/** A message with one base64 attachment. */
export function withAttachment(
  tag: string,
  name: string,
  content: Buffer,
  type = 'application/octet-stream',
): string {
  const boundary = `b-${tag}`;
  return [
    'From: sender@example.net',
    'To: alice@example.test',
    `Subject: attachment ${tag}`,
    `X-Pw-Test: ${tag}`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain',
    '',
    'See the attachment.',
    `--${boundary}`,
    `Content-Type: ${type}; name="${name}"`,
    `Content-Disposition: attachment; filename="${name}"`,
    'Content-Transfer-Encoding: base64',
    '',
    content.toString('base64').replace(/.{76}/g, '$&\r\n'),
    `--${boundary}--`,
    '',
  ].join('\r\n');
}
