#!/usr/bin/env bash
# Create the secrets `docker compose up` reads (./secrets/, one file each, 48
# random bytes in base64, readable by you only). Existing files are kept: a new
# cipher key would make the stored events unreadable, a new event key would
# make consumers drop events still queued. See README, "Secrets".
set -euo pipefail
cd "$(dirname "$0")/.."
umask 077
mkdir -p secrets
for name in auth_secret organizations_event_key evaluation_event_key notifications_event_key \
            organizations_cipher_key evaluation_cipher_key notifications_cipher_key; do
  if [ ! -s "secrets/$name" ]; then
    python3 -c 'import secrets; print(secrets.token_urlsafe(48))' >"secrets/$name"
    echo "created secrets/$name"
  fi
done
