#!/bin/sh
# postwarden-learn-http.sh: the pipe program for a Dovecot on another host than postwarden. It sends the message
# (stdin) to postwarden's learn API over HTTP: POST /api/v1/learn/spam|ham with the admin token.
#
# Unlike the learn socket, this starts processes for every message a user moves (this shell and curl): fine for
# a handful of moves, slow for a user who moves a thousand messages at once (Dovecot waits for each in turn).
# Prefer the socket (learn.socket) whenever Dovecot and postwarden share a host.
#
# Install (README.md): as /usr/lib/dovecot/sieve-pipe/postwarden-learn (the same program name the Sieve scripts
# use), mode 0755, with `sieve_pipe_bin_dir = /usr/lib/dovecot/sieve-pipe` instead of sieve_pipe_socket_dir.
# The token file holds one line, `Authorization: Bearer <the token of http.token_file>`, readable by the
# mail processes only (e.g. root:vmail 0640): curl reads it with -H @file, so the token never shows in `ps`.
set -eu

POSTWARDEN_URL="${POSTWARDEN_URL:-https://postwarden.example.org}"
TOKEN_HEADER_FILE="${TOKEN_HEADER_FILE:-/etc/dovecot/postwarden-learn.header}"

case "${1:-}" in
  spam | ham) ;;
  *)
    echo "usage: postwarden-learn spam|ham < message" >&2
    exit 64
    ;;
esac

# --fail: a refusal (401, 503 queue full) is an exit code Dovecot logs as a failed pipe; the move still happens.
exec curl --silent --show-error --fail --max-time 10 \
  -H "@$TOKEN_HEADER_FILE" -H 'Content-Type: message/rfc822' \
  --data-binary @- "$POSTWARDEN_URL/api/v1/learn/$1"
