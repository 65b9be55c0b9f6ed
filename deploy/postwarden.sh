#!/bin/sh
# /usr/bin/postwarden: the command of a release installed in /opt/postwarden by deploy/install.sh or the .deb.
exec /usr/bin/node /opt/postwarden/dist/src/cli/main.js "$@"
