#!/bin/sh
# The postgres role's scrub step (`fleet env refresh`): it runs on a copy of another
# environment's data before this environment's postgres ever sees it, in a one-shot container
# of the postgres image with no network; FLEET_DATA is where the copy is, FLEET_SOURCE_ENV
# where it came from. The lab's postgres keeps plain files: every email address in them is
# masked. (A real PostgreSQL's scrub, UPDATE statements against a server started on a Unix
# socket only, comes with the database work.) A non-zero exit fails the refresh, and the copy
# is dropped.
set -eu
: "${FLEET_DATA:?FLEET_DATA names the data to scrub}"
address='[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}'
find "$FLEET_DATA" -type f -exec grep -IlE "$address" {} + | while IFS= read -r file; do
  sed -E -i "s/$address/masked@example.invalid/g" "$file"
  echo "masked the email addresses in $file"
done
