# postwarden-report-ham.sieve: IMAPSieve, a message was copied or moved out of Junk: report it as ham,
# except when it went to the trash (deleting spam says nothing about it) or into Junk again.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables", "special-use"];

if environment :matches "imap.mailbox" "*" {
  set "mailbox" "${1}";
}
if anyof (string :is "${mailbox}" ["Trash", "Junk", "Deleted Items", "Deleted Messages"],
          specialuse_exists "${mailbox}" "\\Trash",
          specialuse_exists "${mailbox}" "\\Junk") {
  stop;
}

pipe :copy "postwarden-learn" ["ham"];
