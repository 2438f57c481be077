#!/bin/sh
# A tiny inbox connector in another language: POSIX sh and curl, nothing else.
# It checks a user's IMAP or SMTP settings the way the Python example does and prints
# ONE WORD of its own (then curl's message), which examples/curl-connector/mapping.toml
# maps to mailharness diagnosis codes for `mailharness matrix --mapping`.
#
# Settings come from the environment, as `mailharness matrix` sets it for every case:
#   MAILHARNESS_PROTOCOL imap|smtp   MAILHARNESS_HOST  MAILHARNESS_PORT
#   MAILHARNESS_SECURITY none|starttls|implicit   MAILHARNESS_USERNAME  MAILHARNESS_PASSWORD
#   MAILHARNESS_VERIFY_CERTIFICATE 1|0   MAILHARNESS_CA_PATH   MAILHARNESS_TIMEOUT
#   MAILHARNESS_TLS default|legacy|tls1.0-only   MAILHARNESS_SOURCE_ADDRESS
#   MAILHARNESS_AUTH password|xoauth2 (the password is then the token)
set -u
p=$MAILHARNESS_PROTOCOL host=$MAILHARNESS_HOST port=$MAILHARNESS_PORT
case "$host" in *:*) host="[$host]" ;; esac
scheme=$p
set -- --silent --show-error --verbose --max-time 10 \
  --connect-timeout "${MAILHARNESS_TIMEOUT:-10}" --user "$MAILHARNESS_USERNAME:$MAILHARNESS_PASSWORD"
case "$MAILHARNESS_SECURITY" in
  implicit) scheme=${p}s ;;
  starttls) set -- "$@" --ssl-reqd ;;
esac
[ -n "${MAILHARNESS_CA_PATH:-}" ] && set -- "$@" --cacert "$MAILHARNESS_CA_PATH"
[ "${MAILHARNESS_VERIFY_CERTIFICATE:-1}" = 0 ] && set -- "$@" --insecure
[ "${MAILHARNESS_TLS:-default}" != default ] && set -- "$@" --tlsv1.0 --ciphers 'DEFAULT:@SECLEVEL=0'
[ "${MAILHARNESS_AUTH:-password}" = xoauth2 ] &&
  set -- "$@" --login-options AUTH=XOAUTH2 --oauth2-bearer "$MAILHARNESS_PASSWORD"
[ -n "${MAILHARNESS_SOURCE_ADDRESS:-}" ] && set -- "$@" --interface "$MAILHARNESS_SOURCE_ADDRESS"
url="$scheme://$host:$port"
if [ "$p" = imap ]; then
  set -- "$@" --url "$url/INBOX" --request "EXAMINE INBOX"
else
  message="From: $MAILHARNESS_USERNAME
To: $MAILHARNESS_USERNAME
Subject: curl connector check

hello"
  set -- "$@" --url "$url" --mail-from "$MAILHARNESS_USERNAME" --mail-rcpt "$MAILHARNESS_USERNAME" \
    --upload-file -
fi
log=$(printf '%s\n' "${message:-}" | curl "$@" 2>&1 >/dev/null)
status=$?
said=$(printf '%s\n' "$log" | grep -E '^(curl:|< [A-Z0-9]+ (NO|BAD)|< [45][0-9][0-9])' | tail -n 3 | tr '\n' ' ')
word() { echo "$1 $said"; [ "$1" = WORKS ] && exit 0; exit 1; }
case $status in
  0) word WORKS ;;
  6) word NO_SUCH_HOST ;;
  7) word REFUSED ;;
  28) word TIMED_OUT ;;
  35) case "$log" in *"wrong version number"*) word NOT_TLS ;; *) word OLD_TLS ;; esac ;;
  60) case "$log" in
        *"has expired"*) word CERT_EXPIRED ;;
        *"not yet valid"*) word CERT_NOT_YET_VALID ;;
        *"no alternative certificate subject name"* | *"does not match"*) word WRONG_NAME ;;
        *) word BAD_CERT ;;
      esac ;;
  64) word NO_STARTTLS ;;
  67) case "$log" in
        *PRIVACYREQUIRED*) word NEEDS_TLS ;;
        *) word BAD_LOGIN ;;
      esac ;;
  *) word "FAILED_$status" ;;
esac
