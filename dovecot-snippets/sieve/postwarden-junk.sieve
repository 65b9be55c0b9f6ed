# postwarden-junk.sieve: at delivery (LMTP or LDA), file mail postwarden tagged as spam into Junk.
# A global script (sieve_before): install it in /etc/dovecot/sieve/ and precompile it with `sievec`
# (Dovecot's mail processes may not write the .svbin there). Users' own scripts still run after it.
require ["fileinto", "mailbox"];

if header :is "X-Spam-Flag" "YES" {
  fileinto :create "Junk";
}
