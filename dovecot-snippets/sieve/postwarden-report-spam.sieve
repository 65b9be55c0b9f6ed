# postwarden-report-spam.sieve: IMAPSieve, a message was copied or moved into Junk: report it as spam.
# "postwarden-learn" is the program name: the socket of that name in sieve_pipe_socket_dir (postwarden's
# learn.socket), or a program of that name in sieve_pipe_bin_dir (the HTTP variant, postwarden-learn-http.sh).
# The imapsieve extension makes this script fail anywhere but IMAP: it never runs at delivery.
require ["vnd.dovecot.pipe", "copy", "imapsieve"];

pipe :copy "postwarden-learn" ["spam"];
