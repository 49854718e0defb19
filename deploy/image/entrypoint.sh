#!/bin/sh
# The image's entrypoint: refuse to start with the example credentials that
# deploy/ ships (any value containing "change-me"), then run fleetsync.
# Set real values as deploy/kubernetes/README.md and README.md describe.
set -eu
for name in FLEETSYNC_REDIS_URL FLOWER_BASIC_AUTH REDIS_PASSWORD; do
  eval "value=\${$name:-}"
  case "$value" in
    *[Cc][Hh][Aa][Nn][Gg][Ee]-[Mm][Ee]*)
      echo "fleetsync: refusing to start: $name still holds the example value 'change-me' from deploy/; set a real one (see deploy/kubernetes/README.md, 'Credentials')" >&2
      exit 78 ;;
  esac
done
exec fleetsync "$@"
